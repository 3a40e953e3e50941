// echo: the result is the payload upper-cased; the topic goes to the log.
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
	const char *topic = getenv("FLICK_TOPIC");
	fprintf(stderr, "event on %s\n", topic ? topic : "(none)");
	int c;
	while ((c = getchar()) != EOF) putchar(toupper(c));
	return 0;
}
