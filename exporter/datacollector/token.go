package datacollector

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxTokenFile bounds what LoadToken reads: a token file holds one line.
const maxTokenFile = 4096

// LoadToken reads the token Chef clients must send (the file given to
// --ingest.token-file). Trailing newlines (LF or CRLF) are trimmed. It fails
// if the file cannot be read, is empty, or holds something an HTTP header
// cannot carry unchanged. Its errors name the file, never its content.
func LoadToken(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data collector token file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return nil, fmt.Errorf("data collector token file: %w", err)
	}
	if len(b) > maxTokenFile {
		return nil, fmt.Errorf("data collector token file %s: larger than %d bytes; it must hold only the token", path, maxTokenFile)
	}
	tok := bytes.TrimRight(b, "\r\n")
	if err := checkToken(tok); err != nil {
		return nil, fmt.Errorf("data collector token file %s: %w", path, err)
	}
	return tok, nil
}

// checkToken rejects tokens no request could match. Its errors never quote
// the token.
func checkToken(tok []byte) error {
	if len(tok) == 0 {
		return errors.New("the token is empty")
	}
	for _, c := range tok {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return errors.New("the token contains control characters (line breaks inside it?), which an HTTP header cannot carry")
		}
	}
	if first, last := tok[0], tok[len(tok)-1]; first == ' ' || first == '\t' || last == ' ' || last == '\t' {
		return errors.New("the token starts or ends with white space, which HTTP strips from header values")
	}
	return nil
}
