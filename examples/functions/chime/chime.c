// chime: a doorbell-style reflex in C (clang --target=wasm32-wasi).
//
// Bound to mqtt:home/+/button with --reply 'home/{1}/chime', a button
// press in the hall becomes a chime command for the hall's speaker:
//
//   in  (home/hall/button): {"press":"long"}      (or anything else: single)
//   out (home/hall/chime):  {"room":"hall","tune":"westminster","volume":80}
//
// It reads the room from FLICK_SEGMENT_1 (the level the '+' matched), picks
// a tune from the press kind, and logs one line to stderr.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
	char in[4096];
	size_t n = fread(in, 1, sizeof in - 1, stdin);
	in[n] = 0;
	const char *room = getenv("FLICK_SEGMENT_1");
	if (!room || !*room) room = "unknown";
	const char *tune = "ding-dong";
	int volume = 60;
	if (strstr(in, "\"long\"")) {
		tune = "westminster";
		volume = 80;
	} else if (strstr(in, "\"double\"")) {
		tune = "triple-chime";
		volume = 70;
	}
	for (const char *p = room; *p; p++) {
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) {
			fprintf(stderr, "refusing room name with JSON metacharacters\n");
			return 2;
		}
	}
	printf("{\"room\":\"%s\",\"tune\":\"%s\",\"volume\":%d}", room, tune, volume);
	fprintf(stderr, "%s button -> %s\n", room, tune);
	return 0;
}
