/** A `performance.mark` named `xpkg:<what>`: the stages of a cold page in a trace (bench/browser/cold-trace.ts). */
export const mark = (what: string): void => void globalThis.performance?.mark?.(`xpkg:${what}`);
