package format

import (
	"encoding/json"
	"os"
	"testing"
)

func TestZZ(t *testing.T) {
	p := os.Getenv("ORACLE")
	if p == "" {
		t.Skip()
	}
	data, _ := os.ReadFile(p)
	var file struct{ Cases []vectorCase }
	json.Unmarshal(data, &file)
	fails := 0
	for _, c := range file.Cases {
		v, _ := DecodeJSON(c.Value)
		y, err := YAML(v)
		j, err2 := JSON(v)
		if err != nil || err2 != nil || string(y) != c.YAML || string(j) != *c.JSON {
			fails++
		}
	}
	t.Logf("%d cases, %d failures", len(file.Cases), fails)
}
