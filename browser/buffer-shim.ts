/**
 * The library's archive and key code works on Buffer (positional integer reads, base64, hex): the
 * bundle gets the `buffer` package's implementation in place of Node's global (esbuild `inject`).
 */
export { Buffer } from 'buffer';
