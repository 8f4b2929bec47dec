// Runs hello.wasm in Node's WebAssembly: prints its greeting and fib(10).
import { readFileSync } from "node:fs";

const path = process.argv[2];
const { instance } = await WebAssembly.instantiate(readFileSync(path), {});
const { memory, greeting, greeting_len, fib } = instance.exports;
const text = new TextDecoder().decode(new Uint8Array(memory.buffer, greeting(), greeting_len()));
console.log(text);
console.log(`fib(10) = ${fib(10)}`);
