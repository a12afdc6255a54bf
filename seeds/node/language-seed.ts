// Entry of a Node language seed (L1), exec'd by the root seed with its own V8 flags:
//   node <seed flags> dist/seeds/node/language-seed.js <seeds.sock> <seed id>
// A fresh process, not a fork of the root seed: every function lineage is forked from an
// L1 seed, and nothing of the root seed's memory (container specs and their environments)
// may reach function code.
import { main } from './seed.js';

void main(process.argv.slice(2));
