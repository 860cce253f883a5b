package scftest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// verifyTC3 checks a request's TC3-HMAC-SHA256 signature as Tencent Cloud
// API 3.0 documents it ("Signature v3"), written from that description:
//
//	CanonicalRequest = Method \n "/" \n CanonicalQueryString \n
//	                   CanonicalHeaders \n SignedHeaders \n hex(SHA256(body))
//	StringToSign     = "TC3-HMAC-SHA256" \n Timestamp \n
//	                   Date/service/tc3_request \n hex(SHA256(CanonicalRequest))
//	SecretDate       = HMAC("TC3"+SecretKey, Date)
//	SecretService    = HMAC(SecretDate, service)
//	SecretSigning    = HMAC(SecretService, "tc3_request")
//	Signature        = hex(HMAC(SecretSigning, StringToSign))
//
// CanonicalHeaders lists each signed header as "name:value\n" with the name
// in lower case and the value trimmed, in the order of SignedHeaders, which
// must include content-type and host. The body hash is of the literal
// string UNSIGNED-PAYLOAD when X-TC-Content-SHA256 says so. Date is the UTC
// date of X-TC-Timestamp, which must be within five minutes of now.
func (s *Server) verifyTC3(r *http.Request, body []byte, now time.Time) *APIError {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return &APIError{"AuthFailure.SignatureFailure", "The request has no Authorization header."}
	}
	alg, rest, _ := strings.Cut(auth, " ")
	if alg != "TC3-HMAC-SHA256" {
		return &APIError{"AuthFailure.InvalidAuthorization", "The Authorization header is not TC3-HMAC-SHA256."}
	}
	fields := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return &APIError{"AuthFailure.InvalidAuthorization", "Malformed Authorization header."}
		}
		fields[k] = v
	}
	cred, signedHeaders, sig := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	parts := strings.Split(cred, "/")
	if len(parts) != 4 || parts[3] != "tc3_request" || signedHeaders == "" || sig == "" {
		return &APIError{"AuthFailure.InvalidAuthorization", "Malformed Authorization header."}
	}
	id, date, service := parts[0], parts[1], parts[2]
	key, ok := s.opts.Credentials[id]
	if !ok {
		return &APIError{"AuthFailure.SecretIdNotFound", "The SecretId is not found, please ensure that your SecretId is correct."}
	}
	if service != "scf" && service != camService {
		return &APIError{"AuthFailure.SignatureFailure", "The credential scope names service " + strconv.Quote(service) + ", not scf (or cam)."}
	}
	ts, err := strconv.ParseInt(r.Header.Get("X-TC-Timestamp"), 10, 64)
	if err != nil {
		return &APIError{"AuthFailure.SignatureFailure", "X-TC-Timestamp is missing or not a number."}
	}
	if d := now.Sub(time.Unix(ts, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return &APIError{"AuthFailure.SignatureExpire", "Signature expired. Timestamp and server time cannot differ by more than five minutes."}
	}
	if date != time.Unix(ts, 0).UTC().Format("2006-01-02") {
		return &APIError{"AuthFailure.SignatureFailure", "The credential scope's date is not the date of X-TC-Timestamp."}
	}
	names := strings.Split(signedHeaders, ";")
	if !sort.StringsAreSorted(names) || !contains(names, "content-type") || !contains(names, "host") {
		return &APIError{"AuthFailure.SignatureFailure", "SignedHeaders must be sorted and include content-type and host."}
	}
	var canonHeaders strings.Builder
	for _, n := range names {
		v := r.Header.Get(n)
		if n == "host" {
			v = r.Host
		}
		canonHeaders.WriteString(n + ":" + strings.TrimSpace(v) + "\n")
	}
	payloadHash := sha256Hex(body)
	if r.Header.Get("X-TC-Content-SHA256") == "UNSIGNED-PAYLOAD" {
		payloadHash = sha256Hex([]byte("UNSIGNED-PAYLOAD"))
	}
	canonical := strings.Join([]string{r.Method, "/", r.URL.RawQuery, canonHeaders.String(), signedHeaders, payloadHash}, "\n")
	toSign := strings.Join([]string{"TC3-HMAC-SHA256", strconv.FormatInt(ts, 10), date + "/" + service + "/tc3_request", sha256Hex([]byte(canonical))}, "\n")
	k := hmacSHA256([]byte("TC3"+key.Key), date)
	k = hmacSHA256(k, service)
	k = hmacSHA256(k, "tc3_request")
	want := hex.EncodeToString(hmacSHA256(k, toSign))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return &APIError{"AuthFailure.SignatureFailure", "The provided credentials could not be validated. Please check your signature is correct."}
	}
	if tok := r.Header.Get("X-TC-Token"); tok != key.Token {
		return &APIError{"AuthFailure.TokenFailure", "The token is missing, invalid or expired."}
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
