package params

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
)

// DefaultMaxBody is the body limit FromRequest applies when given maxBody <= 0.
const DefaultMaxBody = 8 << 20

// FromRequest merges the URL query and the body, as Sinatra did for the 12.03
// app: the query string first, then the body, each top-level key of the body
// replacing the query's (Rack's shallow Hash#merge).
//
// Body by media type (parameters such as charset ignored, case-insensitive):
//   - application/x-www-form-urlencoded, and a POST with no Content-Type at
//     all (Rack treated that as a form): Rack nested keys;
//   - multipart/form-data (curl -F), multipart/mixed, multipart/related: each
//     named part is a parameter with Rack nested keys, file parts give their
//     content as a string; parts without a name are skipped;
//   - application/json, text/json, application/yaml, text/yaml: the body must
//     be an object whose first value (document order) is the parameter hash
//     (ActiveResource style {"instance": {...}}); other keys are ignored, as
//     Ruby's values.first did. An empty body is no body. Scalars become
//     strings (see Params);
//   - anything else: the body is not read.
//
// The original parsed JSON/YAML only when Content-Length > 0; a chunked body
// (unknown length) is parsed too when it is not empty, which is what a client
// sending one expects.
//
// Errors: *TooLargeError when the body exceeds maxBody, ErrInvalidBody
// (wrapped) for JSON/YAML/multipart that does not parse or has the wrong
// shape, *ConflictError and *MalformedError from the nested-key decoder.
func FromRequest(r *http.Request, maxBody int64) (Params, error) {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	p, err := ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, err
	}

	ct := r.Header.Get("Content-Type")
	mt := mediaType(ct)
	var body Params
	switch {
	case mt == "application/x-www-form-urlencoded" || (mt == "" && r.Method == http.MethodPost):
		b, err := readBody(r, maxBody)
		if err != nil {
			return nil, err
		}
		// Rack drops one trailing NUL, which old Safari appended to forms.
		b = bytes.TrimSuffix(b, []byte{0})
		if body, err = parseForm(string(b)); err != nil {
			return nil, err
		}
	case mt == "multipart/form-data" || mt == "multipart/mixed" || mt == "multipart/related":
		b, err := readBody(r, maxBody)
		if err != nil {
			return nil, err
		}
		if body, err = parseMultipart(ct, b); err != nil {
			return nil, err
		}
	case mt == "application/json" || mt == "text/json":
		b, err := readBody(r, maxBody)
		if err != nil {
			return nil, err
		}
		if len(b) > 0 {
			if body, err = parseJSONBody(b); err != nil {
				return nil, err
			}
		}
	case mt == "application/yaml" || mt == "text/yaml":
		b, err := readBody(r, maxBody)
		if err != nil {
			return nil, err
		}
		if len(b) > 0 {
			if body, err = parseYAMLBody(b); err != nil {
				return nil, err
			}
		}
	}
	for k, v := range body {
		p[k] = v
	}
	return p, nil
}

// mediaType is Rack's Request#media_type: the Content-Type up to the first
// ';' or ',', trimmed and lower-cased; "" when there is none.
func mediaType(ct string) string {
	if i := strings.IndexAny(ct, ";,"); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.ContentLength == 0 {
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, &TooLargeError{Limit: limit}
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &TooLargeError{Limit: mbe.Limit}
		}
		return nil, fmt.Errorf("params: reading request body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, &TooLargeError{Limit: limit}
	}
	return b, nil
}

// parseMultipart reads every part into memory; the whole body is already
// bounded by maxBody, so no temporary files are needed.
func parseMultipart(ct string, b []byte) (Params, error) {
	_, mp, err := mime.ParseMediaType(ct)
	if err != nil || mp["boundary"] == "" {
		return nil, fmt.Errorf("%w: multipart without boundary", ErrInvalidBody)
	}
	p := Params{}
	mr := multipart.NewReader(bytes.NewReader(b), mp["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return p, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidBody, err)
		}
		name := part.FormName()
		content, err := io.ReadAll(part)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidBody, err)
		}
		if name == "" {
			continue
		}
		if !validKey(name) {
			return nil, &MalformedError{Reason: "parameter name is not valid UTF-8"}
		}
		if _, err := normalize(p, name, string(content), depthLimit); err != nil {
			return nil, err
		}
	}
}

// parseJSONBody takes the first value of the top-level object. Duplicate
// top-level keys keep the position of the first and the value of the last,
// like a Ruby Hash; trailing data after the object is an error as in Ruby.
func parseJSONBody(b []byte) (Params, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	bad := func(why string) (Params, error) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidBody, why)
	}
	tok, err := dec.Token()
	if err != nil {
		return bad(err.Error())
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return bad("not a JSON object")
	}
	var first string
	var firstVal json.RawMessage
	seen := false
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return bad(err.Error())
		}
		key, _ := kt.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return bad(err.Error())
		}
		if !seen {
			first, firstVal, seen = key, raw, true
		} else if key == first {
			firstVal = raw
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return bad(err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("data after the JSON object")
	}
	if !seen {
		return bad("empty JSON object")
	}
	vd := json.NewDecoder(bytes.NewReader(firstVal))
	vd.UseNumber()
	var v any
	if err := vd.Decode(&v); err != nil {
		return bad(err.Error())
	}
	m, ok := jsonValue(v).(map[string]any)
	if !ok {
		return bad("the first value is not an object")
	}
	return Params(m), nil
}

// jsonValue normalises decoded JSON to the Params value set.
func jsonValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = jsonValue(e)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = jsonValue(e)
		}
		return v
	case json.Number:
		return string(v)
	case bool:
		if v {
			return "true"
		}
		return "false"
	}
	return v // string or nil
}
