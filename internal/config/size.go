package config

import "github.com/docker/go-units"

func parseSize(s string) (int64, error) { return units.RAMInBytes(s) }
