// Toy stand-in for the linux-wasm JavaScript host: instantiates the kernel,
// unpacks the initramfs (cpio newc, gzip) and runs BusyBox's main from it.

export async function boot() {
  const out = { crossOriginIsolated: self.crossOriginIsolated === true };
  try {
    out.sharedArrayBuffer = new SharedArrayBuffer(1 << 16).byteLength;
  } catch (err) {
    out.sharedArrayBuffer = String(err);
  }
  const { instance: kernel } = await WebAssembly.instantiateStreaming(fetch("vmlinux.wasm"));
  out.kernel = kernel.exports.start_kernel();
  out.console = kernel.exports.web_console_columns();
  const response = await fetch("initramfs.cpio.gz");
  const unpacked = response.body.pipeThrough(new DecompressionStream("gzip"));
  const files = parseNewc(new Uint8Array(await new Response(unpacked).arrayBuffer()));
  out.entries = Object.keys(files).sort();
  out.console_device = files["dev/console"] && files["dev/console"].rdev;
  out.sh = files["bin/sh"] && new TextDecoder().decode(files["bin/sh"].data);
  const { instance: busybox } = await WebAssembly.instantiate(files["bin/busybox"].data);
  out.busybox = busybox.exports.main();
  return out;
}

function parseNewc(buf) {
  const text = new TextDecoder();
  const files = {};
  let at = 0;
  const field = (i) => parseInt(text.decode(buf.subarray(at + 6 + 8 * i, at + 14 + 8 * i)), 16);
  for (;;) {
    if (text.decode(buf.subarray(at, at + 6)) !== "070701") throw new Error("bad cpio magic at " + at);
    const mode = field(1), size = field(6), rdev = [field(9), field(10)], nameSize = field(11);
    const name = text.decode(buf.subarray(at + 110, at + 110 + nameSize - 1));
    at += 110 + nameSize;
    at += (4 - (at % 4)) % 4;
    if (name === "TRAILER!!!") return files;
    files[name] = { mode, rdev, data: buf.slice(at, at + size) };
    at += size;
    at += (4 - (at % 4)) % 4;
  }
}
