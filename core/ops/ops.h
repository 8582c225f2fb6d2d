// Every op, for code above core/ that wants them all.
#pragma once

#include "core/ops/attention.h"
#include "core/ops/cross_entropy.h"
#include "core/ops/elementwise.h"
#include "core/ops/embedding.h"
#include "core/ops/grouped_matmul.h"
#include "core/ops/index.h"
#include "core/ops/matmul.h"
#include "core/ops/norm.h"
#include "core/ops/random_ops.h"
#include "core/ops/reduce.h"
#include "core/ops/rotary.h"
#include "core/ops/shape.h"
#include "core/ops/softmax.h"
#include "core/ops/view.h"
