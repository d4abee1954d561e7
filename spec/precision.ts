/** Every precision a variant may declare (the manifest schema's union and the CLI's `--precision` check). */
export const PRECISIONS = ['fp32', 'fp16', 'bf16', 'int8', 'int4', 'mixed'] as const;
