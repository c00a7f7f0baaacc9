#!/usr/bin/env node
// The `herald` command: runs the TypeScript entry point directly (Node 24 strips the types).
import '../src/main.ts';
