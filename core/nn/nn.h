// Every nn module, for code above core/ that wants them all.
#pragma once

#include "core/nn/attention.h"
#include "core/nn/linear.h"
#include "core/nn/mlp.h"
#include "core/nn/module.h"
#include "core/nn/norm.h"
