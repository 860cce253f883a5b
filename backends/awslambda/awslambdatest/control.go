package awslambdatest

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"time"
)

// Call is one request to the control plane, as recorded by Calls.
// Invocations are not recorded (see Stats).
type Call struct {
	// Op is the API operation, such as "CreateFunction" or "Invoke".
	Op string
	// Function is the function named in the path or body.
	Function string
	// Params is the decoded JSON body of a control-plane request, with
	// ZipFile replaced by the SHA-256 of the code (base64, as Lambda's
	// CodeSha256) and query parameters added as "?name".
	Params map[string]any
	// Status is the HTTP status of the answer.
	Status int
}

// Calls returns the control-plane calls made so far, in order.
func (s *Server) Calls() []Call {
	s.callsMu.Lock()
	defer s.callsMu.Unlock()
	return slices.Clone(s.calls)
}

// Code returns the code (zip archive) last uploaded for a function, or nil.
func (s *Server) Code(function string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.functions[function]; f != nil {
		return f.code
	}
	return nil
}

// Config returns a function's configuration as GetFunctionConfiguration
// answers it (without counting as a read), and whether it exists.
func (s *Server) Config(function string) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.functions[function]
	if f == nil {
		return nil, false
	}
	return f.config(s), true
}

// function is a function's control-plane state.
type function struct {
	name         string
	runtime      string
	role         string
	handler      string
	description  string
	memory       int
	timeout      int
	env          map[string]string
	arch         []string
	code         []byte
	sha          string
	lastModified time.Time
	state        string // Pending, Active
	update       string // Successful, InProgress
	pendingReads int    // reads left before Pending/InProgress ends
	retries      *int   // MaximumRetryAttempts of the event invoke config
	eventAge     *int
}

func (s *Server) newFunction(name string) *function {
	return &function{
		name: name, runtime: "provided.al2023", handler: "bootstrap",
		role: "arn:aws:iam::123456789012:role/awslambdatest", memory: 1024, timeout: int(s.o.Timeout.Seconds()),
		arch: []string{"x86_64"}, lastModified: time.Now(), state: "Active", update: "Successful",
	}
}

// config renders f as a FunctionConfiguration.
func (f *function) config(s *Server) map[string]any {
	c := map[string]any{
		"FunctionName":     f.name,
		"FunctionArn":      s.arn(f.name),
		"Runtime":          f.runtime,
		"Role":             f.role,
		"Handler":          f.handler,
		"CodeSize":         len(f.code),
		"CodeSha256":       f.sha,
		"Description":      f.description,
		"Timeout":          f.timeout,
		"MemorySize":       f.memory,
		"LastModified":     f.lastModified.UTC().Format("2006-01-02T15:04:05.000-0700"),
		"Version":          "$LATEST",
		"State":            f.state,
		"LastUpdateStatus": f.update,
		"PackageType":      "Zip",
		"Architectures":    f.arch,
		"RevisionId":       f.sha,
	}
	if len(f.env) > 0 {
		c["Environment"] = map[string]any{"Variables": f.env}
	}
	return c
}

// read is a read of f's state: Pending and InProgress end after
// Options.PendingPolls reads.
func (f *function) read() {
	if f.pendingReads > 0 {
		f.pendingReads--
		return
	}
	f.state, f.update = "Active", "Successful"
}

func (s *Server) controlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /2015-03-31/functions", s.createFunction)
	mux.HandleFunc("GET /2015-03-31/functions/{name}", s.getFunction)
	mux.HandleFunc("GET /2015-03-31/functions/{name}/configuration", s.getFunction)
	mux.HandleFunc("PUT /2015-03-31/functions/{name}/code", s.updateCode)
	mux.HandleFunc("PUT /2015-03-31/functions/{name}/configuration", s.updateConfiguration)
	mux.HandleFunc("PUT /2019-09-25/functions/{name}/event-invoke-config", s.putEventInvokeConfig)
}

// record appends a call and returns its index.
func (s *Server) record(r *http.Request, op, name string, params map[string]any) int {
	s.callsMu.Lock()
	defer s.callsMu.Unlock()
	for k, v := range r.URL.Query() {
		params["?"+k] = v[0]
	}
	s.calls = append(s.calls, Call{Op: op, Function: name, Params: params})
	return len(s.calls) - 1
}

var (
	functionNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	roleRE         = regexp.MustCompile(`^arn:aws[a-zA-Z-]*:iam::\d{12}:role/[\w+=,.@/-]+$`)
)

// controlCall decodes a control-plane request body into params (ZipFile
// replaced by its hash) and records the call. It answers the error itself
// and returns ok false when the body is not JSON.
func (s *Server) controlCall(w http.ResponseWriter, r *http.Request, op, name string) (params map[string]any, zipFile []byte, status func(int), ok bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 70<<20))
	if err != nil {
		apiError(w, http.StatusBadRequest, "InvalidRequestContentException", err.Error())
		return nil, nil, nil, false
	}
	params = map[string]any{}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &params); err != nil {
			apiError(w, http.StatusBadRequest, "InvalidRequestContentException", "Could not parse request body into json: "+err.Error())
			return nil, nil, nil, false
		}
	}
	zf := func(m map[string]any) {
		if z, ok := m["ZipFile"].(string); ok {
			zipFile, _ = base64.StdEncoding.DecodeString(z)
			m["ZipFile"] = codeSha(zipFile)
		}
	}
	zf(params)
	if code, ok := params["Code"].(map[string]any); ok {
		zf(code)
	}
	if name == "" {
		name, _ = params["FunctionName"].(string)
	}
	idx := s.record(r, op, name, params)
	return params, zipFile, func(st int) {
		s.callsMu.Lock()
		s.calls[idx].Status = st
		s.callsMu.Unlock()
	}, true
}

func codeSha(zip []byte) string {
	sum := sha256.Sum256(zip)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-RequestId", requestID())
	w.WriteHeader(status)
	w.Write(b)
}

// checkZip verifies that code is a zip archive; Lambda refuses others.
func checkZip(code []byte) string {
	if len(code) == 0 {
		return "Uploaded file must be a non-empty zip"
	}
	if _, err := zip.NewReader(bytes.NewReader(code), int64(len(code))); err != nil {
		return "Could not unzip uploaded file. Please check your file, then try to upload again."
	}
	return ""
}

func (s *Server) createFunction(w http.ResponseWriter, r *http.Request) {
	p, code, status, ok := s.controlCall(w, r, "CreateFunction", "")
	if !ok {
		return
	}
	fail := func(st int, codeName, msg string) {
		status(st)
		apiError(w, st, codeName, msg)
	}
	name, _ := p["FunctionName"].(string)
	role, _ := p["Role"].(string)
	switch {
	case !functionNameRE.MatchString(name):
		fail(http.StatusBadRequest, "InvalidParameterValueException", "1 validation error detected: Value '"+name+"' at 'functionName' failed to satisfy constraint")
		return
	case !roleRE.MatchString(role):
		fail(http.StatusBadRequest, "InvalidParameterValueException", "1 validation error detected: Value '"+role+"' at 'role' failed to satisfy constraint: Member must satisfy regular expression pattern")
		return
	}
	if msg := checkZip(code); msg != "" {
		fail(http.StatusBadRequest, "InvalidParameterValueException", msg)
		return
	}
	s.mu.Lock()
	if s.functions[name] != nil {
		s.mu.Unlock()
		fail(http.StatusConflict, "ResourceConflictException", "Function already exist: "+name)
		return
	}
	f := s.newFunction(name)
	f.role = role
	f.memory, f.timeout = 128, 3
	applyConfig(f, p)
	f.code, f.sha = code, codeSha(code)
	f.state, f.update = "Pending", "Successful"
	f.pendingReads = s.o.PendingPolls
	s.functions[name] = f
	c := f.config(s)
	s.mu.Unlock()
	status(http.StatusCreated)
	writeJSON(w, http.StatusCreated, c)
}

// applyConfig sets the configuration fields present in p.
func applyConfig(f *function, p map[string]any) {
	if v, ok := p["Runtime"].(string); ok {
		f.runtime = v
	}
	if v, ok := p["Role"].(string); ok {
		f.role = v
	}
	if v, ok := p["Handler"].(string); ok {
		f.handler = v
	}
	if v, ok := p["Description"].(string); ok {
		f.description = v
	}
	if v, ok := p["MemorySize"].(float64); ok {
		f.memory = int(v)
	}
	if v, ok := p["Timeout"].(float64); ok {
		f.timeout = int(v)
	}
	if v, ok := p["Architectures"].([]any); ok {
		f.arch = nil
		for _, a := range v {
			if a, ok := a.(string); ok {
				f.arch = append(f.arch, a)
			}
		}
	}
	if env, ok := p["Environment"].(map[string]any); ok {
		vars, _ := env["Variables"].(map[string]any)
		f.env = map[string]string{}
		for k, v := range vars {
			f.env[k], _ = v.(string)
		}
	}
	f.lastModified = time.Now()
}

// lookup finds the function of a request, answering 404 when there is none.
func (s *Server) lookup(w http.ResponseWriter, name string, status func(int)) *function {
	f := s.functions[name]
	if f == nil {
		status(http.StatusNotFound)
		apiError(w, http.StatusNotFound, "ResourceNotFoundException", "Function not found: "+s.arn(name))
	}
	return f
}

func (s *Server) getFunction(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	op := "GetFunction"
	if r.URL.Path != "/2015-03-31/functions/"+name {
		op = "GetFunctionConfiguration"
	}
	_, _, status, ok := s.controlCall(w, r, op, name)
	if !ok {
		return
	}
	s.mu.Lock()
	f := s.lookup(w, name, status)
	if f == nil {
		s.mu.Unlock()
		return
	}
	f.read()
	c := f.config(s)
	s.mu.Unlock()
	status(http.StatusOK)
	if op == "GetFunctionConfiguration" {
		writeJSON(w, http.StatusOK, c)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"Configuration": c,
		"Code":          map[string]any{"RepositoryType": "S3", "Location": s.URL() + "/code/" + name},
		"Tags":          map[string]string{},
	})
}

// beginUpdate refuses an update while another is in progress, as Lambda
// does, and otherwise marks one in progress.
func (s *Server) beginUpdate(w http.ResponseWriter, f *function, status func(int)) bool {
	if f.state == "Pending" || f.update == "InProgress" {
		status(http.StatusConflict)
		apiError(w, http.StatusConflict, "ResourceConflictException",
			"The operation cannot be performed at this time. An update is in progress for resource: "+s.arn(f.name))
		return false
	}
	f.update = "InProgress"
	f.pendingReads = s.o.PendingPolls
	f.lastModified = time.Now()
	return true
}

func (s *Server) updateCode(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p, code, status, ok := s.controlCall(w, r, "UpdateFunctionCode", name)
	if !ok {
		return
	}
	if msg := checkZip(code); msg != "" {
		status(http.StatusBadRequest)
		apiError(w, http.StatusBadRequest, "InvalidParameterValueException", msg)
		return
	}
	s.mu.Lock()
	f := s.lookup(w, name, status)
	if f == nil || !s.beginUpdate(w, f, status) {
		s.mu.Unlock()
		return
	}
	f.code, f.sha = code, codeSha(code)
	applyConfig(f, map[string]any{"Architectures": p["Architectures"]})
	c := f.config(s)
	s.mu.Unlock()
	status(http.StatusOK)
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) updateConfiguration(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p, _, status, ok := s.controlCall(w, r, "UpdateFunctionConfiguration", name)
	if !ok {
		return
	}
	if role, ok := p["Role"].(string); ok && !roleRE.MatchString(role) {
		status(http.StatusBadRequest)
		apiError(w, http.StatusBadRequest, "InvalidParameterValueException", "1 validation error detected: Value '"+role+"' at 'role' failed to satisfy constraint")
		return
	}
	s.mu.Lock()
	f := s.lookup(w, name, status)
	if f == nil || !s.beginUpdate(w, f, status) {
		s.mu.Unlock()
		return
	}
	cfg := maps.Clone(p)
	delete(cfg, "Architectures") // not a configuration field
	applyConfig(f, cfg)
	c := f.config(s)
	s.mu.Unlock()
	status(http.StatusOK)
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) putEventInvokeConfig(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p, _, status, ok := s.controlCall(w, r, "PutFunctionEventInvokeConfig", name)
	if !ok {
		return
	}
	s.mu.Lock()
	f := s.lookup(w, name, status)
	if f == nil {
		s.mu.Unlock()
		return
	}
	f.retries, f.eventAge = nil, nil
	if v, ok := p["MaximumRetryAttempts"].(float64); ok {
		if v < 0 || v > 2 {
			s.mu.Unlock()
			status(http.StatusBadRequest)
			apiError(w, http.StatusBadRequest, "InvalidParameterValueException", "MaximumRetryAttempts must be between 0 and 2")
			return
		}
		n := int(v)
		f.retries = &n
	}
	if v, ok := p["MaximumEventAgeInSeconds"].(float64); ok {
		n := int(v)
		f.eventAge = &n
	}
	out := map[string]any{"FunctionArn": s.arn(name) + ":$LATEST", "LastModified": float64(time.Now().Unix())}
	if f.retries != nil {
		out["MaximumRetryAttempts"] = *f.retries
	}
	if f.eventAge != nil {
		out["MaximumEventAgeInSeconds"] = *f.eventAge
	}
	s.mu.Unlock()
	status(http.StatusOK)
	writeJSON(w, http.StatusOK, out)
}
