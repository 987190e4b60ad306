// Minimal typing of @nxtedition/rocksdb, which ships none: the parts of the
// abstract-level 1.x interface that Magistral uses.
declare module "@nxtedition/rocksdb" {
  export interface BatchOp {
    type: "put" | "del";
    key: string;
    value?: Uint8Array;
  }
  export interface IteratorOptions {
    gt?: string;
    gte?: string;
    lt?: string;
    lte?: string;
    reverse?: boolean;
    limit?: number;
  }
  export class RocksLevel {
    constructor(location: string, options?: { keyEncoding?: string; valueEncoding?: string });
    open(): Promise<void>;
    close(): Promise<void>;
    get(key: string): Promise<Uint8Array>;
    /** Values in the order of `keys`; undefined where a key is missing. */
    getMany(keys: string[]): Promise<(Uint8Array | undefined)[]>;
    put(key: string, value: Uint8Array): Promise<void>;
    del(key: string): Promise<void>;
    /** `sync` waits for the write-ahead log to reach the disk (fsync). */
    batch(ops: BatchOp[], options?: { sync?: boolean }): Promise<void>;
    iterator(options?: IteratorOptions): AsyncIterable<[string, Uint8Array]> & {
      close(): Promise<void>;
    };
    keys(options?: IteratorOptions): AsyncIterable<string>;
    readonly status: string;
  }
  const rocks: { RocksLevel: typeof RocksLevel };
  export default rocks;
}
