// env: prints its environment, one variable a line, and tries to open a file.
#include <stdio.h>
extern char **environ;
int main(void) {
	for (char **e = environ; *e; e++) printf("%s\n", *e);
	FILE *f = fopen("/etc/passwd", "r");
	printf("fopen=%s\n", f ? "opened" : "refused");
	return 0;
}
