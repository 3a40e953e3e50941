package forward

import "sort"

func sortStatus(s []Status) { sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name }) }
