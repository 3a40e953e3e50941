// loop: never returns; the deadline must stop it.
int main(void) {
	volatile unsigned long n = 0;
	for (;;) n++;
}
