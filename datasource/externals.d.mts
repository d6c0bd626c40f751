export declare const EXTERNALS: string[];
