/** Entry point of the `iommu-sim` command. */
import createDebug from 'debug';
import { main } from './main.js';
import { tuneV8 } from './v8-tuning.js';

tuneV8();

// Debug lines carry virtual time ([s.µs]); the wall-clock date debug adds off a terminal is noise.
(createDebug as unknown as { inspectOpts: { hideDate?: boolean } }).inspectOpts.hideDate = true;

// A reader that stops early (`iommu-sim run | head`) is not an error: stop quietly.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

process.exitCode = await main(process.argv.slice(2));
