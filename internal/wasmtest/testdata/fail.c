// fail: reports an error and exits with status 3.
#include <stdio.h>
int main(void) {
	fprintf(stderr, "sensor value out of range\n");
	return 3;
}
