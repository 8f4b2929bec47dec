/* A freestanding wasm32 module: no libc, two exports the host can call. */

static const char greeting[] = "hello from wasm32, built by lwrecipe";

__attribute__((export_name("greeting")))
const char *greeting_ptr(void) { return greeting; }

__attribute__((export_name("greeting_len")))
int greeting_len(void) { return (int)sizeof greeting - 1; }

__attribute__((export_name("fib")))
unsigned fib(unsigned n) {
    unsigned a = 0, b = 1;
    while (n--) {
        unsigned t = a + b;
        a = b;
        b = t;
    }
    return a;
}
