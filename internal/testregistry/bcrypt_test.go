package testregistry

import "testing"

func TestBlowfishInitialState(t *testing.T) {
	s := initialState()
	// The well-known first and last words of the Blowfish constants.
	for _, c := range []struct {
		got, want uint32
		what      string
	}{
		{s.p[0], 0x243f6a88, "P[0]"},
		{s.p[17], 0x8979fb1b, "P[17]"},
		{s.s[0][0], 0xd1310ba6, "S0[0]"},
		{s.s[0][255], 0x6e85076a, "S0[255]"},
		{s.s[1][0], 0x4b7a70e9, "S1[0]"},
		{s.s[3][255], 0x3ac372e6, "S3[255]"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#08x, want %#08x", c.what, c.got, c.want)
		}
	}
}

func TestBcryptVectors(t *testing.T) {
	// Published vectors (from the x/crypto/bcrypt, jBCrypt and OpenBSD test suites).
	for _, v := range []struct {
		pass string
		cost int
		want string
	}{
		{"allmine", 10, "$2a$10$XajjQvNhvvRt5GSeFk1xFeyqRrsxkhBkUiQeg0dt.wU1qD4aFDcga"},
		{"", 6, "$2a$06$DCq7YPn5Rq63x1Lad4cll.TV4S6ytwfsfvkgY8jIucDrjc8deX1s."},
		{"abc", 6, "$2a$06$If6bvum7DFjUnE9p2uDeDu0YHzrHM6tf.iqN8.yx.jNN1ILEf7h0i"},
		{"U*U*", 5, "$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK"},
		{"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored", 5,
			"$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui"},
	} {
		salt, err := bcryptB64.DecodeString(v.want[7:29])
		if err != nil {
			t.Fatal(err)
		}
		if got := bcryptHash([]byte(v.pass), v.cost, salt); got != v.want {
			t.Errorf("bcrypt(%q, %d) = %s, want %s", v.pass, v.cost, got, v.want)
		}
	}
}
