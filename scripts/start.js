#!/usr/bin/env node
// `npm start`: builds when dist/ is missing or older than src/, then runs one node in this process.
const { execSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const entry = path.join(root, 'dist', 'main.js');

function newestMtime(dir) {
  let newest = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs);
  }
  return newest;
}

if (!fs.existsSync(entry) || fs.statSync(entry).mtimeMs < newestMtime(path.join(root, 'src'))) {
  execSync('npm run build', { cwd: root, stdio: 'inherit' });
}
require(entry);
