// bigmem: declares 32 MiB of static data, so its initial memory is large.
#include <stdio.h>
char big[32 << 20];
int main(int argc, char **argv) {
	big[argc * 12345] = 1;
	printf("%d\n", big[argc * 12345] + big[(argc + 1) * 54321]);
	return 0;
}
