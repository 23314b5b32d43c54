/**
 * The hardware translation table walker (VMSAv8-64): configuration decode and compile, the walk, and
 * its result. See walker.ts for what is and is not modelled.
 */
export * from './config.js';
export * from './result.js';
export * from './walker.js';
