// badimport: imports a host function Flick does not provide.
__attribute__((import_module("env"), import_name("open_socket"))) int open_socket(int);
int main(void) { return open_socket(1); }
