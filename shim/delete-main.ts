// Entry for `containerd-shim-spore-v2 ... delete` (compiled to dist/shim/delete-main.js): the
// launcher execs `node dist/shim/delete-main.js <shim argv>`; stdout gets the DeleteResponse bytes.
import { main } from './delete.js';

void main(process.argv.slice(2), process.env);
