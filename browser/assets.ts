/** Where the bundle's own files (onnxruntime-web's and QuickJS's WASM, the sandbox worker) are served. */
let base = '';

export function setAssetBase(url: string): void {
  base = url;
}

export function assetUrl(file: string): string {
  return new URL(file, base || globalThis.location?.href).href;
}
