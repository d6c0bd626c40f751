// Runs once before any test worker starts: the tests that load dist/module.js (module-amd,
// browser) need it built, and building it from two workers at once would race on dist/.
import { ensureBuilt } from './build';

export default function setup() {
  ensureBuilt();
}
