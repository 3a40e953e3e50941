// hog: grows memory until the cap refuses, then aborts, which traps. The
// chunks are chained through their first word so the compiler cannot elide
// the allocations.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
	void **head = 0;
	size_t total = 0;
	for (;;) {
		void **p = malloc(1 << 20);
		if (!p) break;
		memset(p, 1, 1 << 20);
		*p = head;
		head = p;
		total += 1 << 20;
	}
	fprintf(stderr, "got %zu MiB before the cap (%p)\n", total >> 20, (void *)head);
	abort();
}
