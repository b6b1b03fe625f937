// Absolute paths of the project and of the benchmark's own files.

/** Absolute path of the project root, with a trailing slash. */
export const ROOT: string = decodeURIComponent(new URL("../", import.meta.url).pathname);

/** Absolute path of the bench folder, with a trailing slash. */
export const BENCH_DIR = `${ROOT}bench/`;
