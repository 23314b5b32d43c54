// tracelib ships no type declarations; the trace test describes the part it uses.
declare module 'tracelib' {
  const Tracelib: unknown;
  export default Tracelib;
}
