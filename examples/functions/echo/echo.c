// echo: the smallest useful function, in C. The result is the payload,
// unchanged. The reflex benchmark runs it against a native echo to show
// what a fresh Wasm instance per event costs on top of the broker.
#include <stdio.h>

int main(void) {
	char buf[8192];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, n, stdout);
	return 0;
}
