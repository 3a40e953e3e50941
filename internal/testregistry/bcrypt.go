package testregistry

// A minimal bcrypt, to write the htpasswd file docker-registry reads (it
// accepts bcrypt entries only). golang.org/x/crypto is not in Flick's module
// graph, so this is written from the published algorithm (Provos and
// Mazières, "A Future-Adaptable Password Scheme", 1999) on top of Blowfish,
// whose initial state is the fractional part of pi in hexadecimal, computed
// here with math/big instead of being spelled out. It only hashes; it is for
// tests, and is checked against published bcrypt vectors and against the
// registry itself.

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/big"
	"sync"
)

// blowfishState is Blowfish's P-array and S-boxes.
type blowfishState struct {
	p [18]uint32
	s [4][256]uint32
}

var (
	piOnce  sync.Once
	piState blowfishState
)

// initialState returns Blowfish's initial state: the first 1042 32-bit words
// of the fractional part of pi, P-array first, then S-boxes 0 to 3.
func initialState() blowfishState {
	piOnce.Do(func() {
		const words = 18 + 4*256
		const bits = words * 32
		const guard = 64
		one := new(big.Int).Lsh(big.NewInt(1), bits+guard)
		// Machin: pi = 16 atan(1/5) - 4 atan(1/239).
		pi := new(big.Int).Mul(arctanInv(5, one), big.NewInt(16))
		pi.Sub(pi, new(big.Int).Mul(arctanInv(239, one), big.NewInt(4)))
		pi.Sub(pi, new(big.Int).Mul(one, big.NewInt(3))) // keep the fraction
		pi.Rsh(pi, guard)
		b := pi.FillBytes(make([]byte, words*4))
		w := func(i int) uint32 { return binary.BigEndian.Uint32(b[4*i:]) }
		for i := range piState.p {
			piState.p[i] = w(i)
		}
		for k := range piState.s {
			for i := range piState.s[k] {
				piState.s[k][i] = w(18 + 256*k + i)
			}
		}
	})
	return piState
}

// arctanInv returns atan(1/x) in fixed point with unit one.
func arctanInv(x int64, one *big.Int) *big.Int {
	sum := new(big.Int)
	term := new(big.Int).Quo(one, big.NewInt(x)) // one / x^(2k+1)
	x2 := big.NewInt(x * x)
	q := new(big.Int)
	for k := int64(0); term.Sign() != 0; k++ {
		q.Quo(term, big.NewInt(2*k+1))
		if k%2 == 0 {
			sum.Add(sum, q)
		} else {
			sum.Sub(sum, q)
		}
		term.Quo(term, x2)
	}
	return sum
}

func (c *blowfishState) f(x uint32) uint32 {
	return ((c.s[0][x>>24] + c.s[1][x>>16&0xff]) ^ c.s[2][x>>8&0xff]) + c.s[3][x&0xff]
}

func (c *blowfishState) encrypt(l, r uint32) (uint32, uint32) {
	l ^= c.p[0]
	for i := 1; i <= 16; i += 2 {
		r ^= c.f(l) ^ c.p[i]
		l ^= c.f(r) ^ c.p[i+1]
	}
	r ^= c.p[17]
	return r, l
}

// nextWord reads 4 bytes of b, cyclically, from *j, big-endian.
func nextWord(b []byte, j *int) uint32 {
	var w uint32
	for i := 0; i < 4; i++ {
		w = w<<8 | uint32(b[*j])
		*j = (*j + 1) % len(b)
	}
	return w
}

// expandKey is Blowfish's key schedule with bcrypt's salt extension (salt may
// be nil: then it is the plain Blowfish key schedule).
func (c *blowfishState) expandKey(key, salt []byte) {
	j := 0
	for i := range c.p {
		c.p[i] ^= nextWord(key, &j)
	}
	j = 0
	var l, r uint32
	next := func() {
		if salt != nil {
			l ^= nextWord(salt, &j)
			r ^= nextWord(salt, &j)
		}
		l, r = c.encrypt(l, r)
	}
	for i := 0; i < len(c.p); i += 2 {
		next()
		c.p[i], c.p[i+1] = l, r
	}
	for k := range c.s {
		for i := 0; i < 256; i += 2 {
			next()
			c.s[k][i], c.s[k][i+1] = l, r
		}
	}
}

var bcryptB64 = base64.NewEncoding("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789").WithPadding(base64.NoPadding)

// bcryptHash returns the "$2a$" bcrypt hash of password with the given cost
// (4 to 31) and 16-byte salt (random if nil).
func bcryptHash(password []byte, cost int, salt []byte) string {
	if cost < 4 || cost > 31 {
		panic(fmt.Sprintf("bcrypt: bad cost %d", cost))
	}
	if salt == nil {
		salt = make([]byte, 16)
		_, _ = rand.Read(salt)
	}
	if len(salt) != 16 {
		panic("bcrypt: salt must be 16 bytes")
	}
	// The key is the password with its terminating NUL, at most 72 bytes.
	key := append(append([]byte(nil), password...), 0)
	if len(key) > 72 {
		key = key[:72]
	}
	c := initialState()
	c.expandKey(key, salt)
	for i := 0; i < 1<<cost; i++ {
		c.expandKey(key, nil)
		c.expandKey(salt, nil)
	}
	text := []byte("OrpheanBeholderScryDoubt")
	for i := 0; i < len(text); i += 8 {
		l := binary.BigEndian.Uint32(text[i:])
		r := binary.BigEndian.Uint32(text[i+4:])
		for n := 0; n < 64; n++ {
			l, r = c.encrypt(l, r)
		}
		binary.BigEndian.PutUint32(text[i:], l)
		binary.BigEndian.PutUint32(text[i+4:], r)
	}
	// Like every bcrypt, encode only 23 of the 24 bytes.
	return fmt.Sprintf("$2a$%02d$%s%s", cost, bcryptB64.EncodeToString(salt), bcryptB64.EncodeToString(text[:23]))
}
