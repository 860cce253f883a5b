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
	"strconv"
	"strings"
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
	version      string            // latest, or the number of a published version
	versions     []*function       // published versions: versions[i] is version i+1
	aliases      map[string]*alias // by name
}

// alias is a function alias: a name for one of its versions.
type alias struct {
	name, version, description, revision string
}

func (a *alias) config(s *Server, fn string) map[string]any {
	return map[string]any{
		"AliasArn":        s.arn(fn) + ":" + a.name,
		"Name":            a.name,
		"FunctionVersion": a.version,
		"Description":     a.description,
		"RevisionId":      a.revision,
	}
}

func (s *Server) newFunction(name string) *function {
	return &function{
		name: name, runtime: "provided.al2023", handler: "bootstrap",
		role: "arn:aws:iam::123456789012:role/awslambdatest", memory: 1024, timeout: int(s.o.Timeout.Seconds()),
		arch: []string{"x86_64"}, lastModified: time.Now(), state: "Active", update: "Successful",
		version: latest, aliases: map[string]*alias{},
	}
}

// config renders f as a FunctionConfiguration.
func (f *function) config(s *Server) map[string]any {
	arn := s.arn(f.name)
	if f.version != latest {
		arn += ":" + f.version
	}
	c := map[string]any{
		"FunctionName":     f.name,
		"FunctionArn":      arn,
		"Runtime":          f.runtime,
		"Role":             f.role,
		"Handler":          f.handler,
		"CodeSize":         len(f.code),
		"CodeSha256":       f.sha,
		"Description":      f.description,
		"Timeout":          f.timeout,
		"MemorySize":       f.memory,
		"LastModified":     f.lastModified.UTC().Format("2006-01-02T15:04:05.000-0700"),
		"Version":          f.version,
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
	mux.HandleFunc("DELETE /2015-03-31/functions/{name}", s.deleteFunction)
	mux.HandleFunc("PUT /2015-03-31/functions/{name}/code", s.updateCode)
	mux.HandleFunc("PUT /2015-03-31/functions/{name}/configuration", s.updateConfiguration)
	mux.HandleFunc("PUT /2019-09-25/functions/{name}/event-invoke-config", s.putEventInvokeConfig)
	mux.HandleFunc("POST /2015-03-31/functions/{name}/versions", s.publishVersion)
	mux.HandleFunc("POST /2015-03-31/functions/{name}/aliases", s.createAlias)
	mux.HandleFunc("GET /2015-03-31/functions/{name}/aliases/{alias}", s.getAlias)
	mux.HandleFunc("PUT /2015-03-31/functions/{name}/aliases/{alias}", s.updateAlias)
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

// lookupLocked finds the function an operation on the function itself
// names, answering the error when there is none.
func (s *Server) lookupLocked(w http.ResponseWriter, op, name string, status func(int)) *function {
	f, e := s.resolveUnqualifiedLocked(op, name)
	if e != nil {
		status(e.status)
		e.write(w)
		return nil
	}
	return f
}

func (s *Server) getFunction(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	op := "GetFunction"
	if strings.HasSuffix(r.URL.Path, "/configuration") {
		op = "GetFunctionConfiguration"
	}
	_, _, status, ok := s.controlCall(w, r, op, name)
	if !ok {
		return
	}
	s.mu.Lock()
	t, e := s.resolveLocked(op, name, r.URL.Query().Get("Qualifier"))
	if e != nil {
		s.mu.Unlock()
		status(e.status)
		e.write(w)
		return
	}
	t.fn.read()
	c := t.config(s)
	s.mu.Unlock()
	status(http.StatusOK)
	if op == "GetFunctionConfiguration" {
		writeJSON(w, http.StatusOK, c)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"Configuration": c,
		"Code":          map[string]any{"RepositoryType": "S3", "Location": s.URL() + "/code/" + t.fn.name},
		"Tags":          map[string]string{},
	})
}

// deleteFunction deletes a function with its versions and aliases (204).
// Deleting one version (the Qualifier parameter) is not emulated: it gets
// 400 InvalidParameterValueException.
func (s *Server) deleteFunction(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	_, _, status, ok := s.controlCall(w, r, "DeleteFunction", name)
	if !ok {
		return
	}
	if q := r.URL.Query().Get("Qualifier"); q != "" {
		status(http.StatusBadRequest)
		apiError(w, http.StatusBadRequest, "InvalidParameterValueException", "awslambdatest: deleting a version or alias ("+q+") is not emulated")
		return
	}
	s.mu.Lock()
	f := s.lookupLocked(w, "DeleteFunction", name, status)
	if f == nil {
		s.mu.Unlock()
		return
	}
	delete(s.functions, f.name)
	s.mu.Unlock()
	status(http.StatusNoContent)
	w.Header().Set("X-Amzn-RequestId", requestID())
	w.WriteHeader(http.StatusNoContent)
}

// beginUpdate refuses an update while another is in progress, as Lambda
// does, and otherwise marks one in progress.
func (s *Server) beginUpdate(w http.ResponseWriter, f *function, status func(int)) bool {
	if e := s.notReadyLocked(f); e != nil {
		status(e.status)
		e.write(w)
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
	f := s.lookupLocked(w, "UpdateFunctionCode", name, status)
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
	f := s.lookupLocked(w, "UpdateFunctionConfiguration", name, status)
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
	f := s.lookupLocked(w, "PutFunctionEventInvokeConfig", name, status)
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
	out := map[string]any{"FunctionArn": s.arn(f.name) + ":$LATEST", "LastModified": float64(time.Now().Unix())}
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

// publishVersion publishes the function's current code and configuration as
// a new version, unless the last version published has the same code, which
// Lambda then answers again.
func (s *Server) publishVersion(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p, _, status, ok := s.controlCall(w, r, "PublishVersion", name)
	if !ok {
		return
	}
	s.mu.Lock()
	f := s.lookupLocked(w, "PublishVersion", name, status)
	if f == nil {
		s.mu.Unlock()
		return
	}
	if e := s.notReadyLocked(f); e != nil {
		s.mu.Unlock()
		status(e.status)
		e.write(w)
		return
	}
	if n := len(f.versions); n > 0 && f.versions[n-1].sha == f.sha {
		c := f.versions[n-1].config(s)
		s.mu.Unlock()
		status(http.StatusCreated)
		writeJSON(w, http.StatusCreated, c)
		return
	}
	v := *f
	v.version = strconv.Itoa(len(f.versions) + 1)
	v.versions, v.aliases = nil, nil
	if d, ok := p["Description"].(string); ok {
		v.description = d
	}
	f.versions = append(f.versions, &v)
	c := v.config(s)
	s.mu.Unlock()
	status(http.StatusCreated)
	writeJSON(w, http.StatusCreated, c)
}

var aliasRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,128}$`)

// aliasVersionLocked checks that version names the function's $LATEST or
// one of its published versions.
func (s *Server) aliasVersionLocked(f *function, version string) *apiErr {
	if version == latest {
		return nil
	}
	if versionRE.MatchString(version) {
		if i := versionIndex(version); i >= 0 && i < len(f.versions) {
			return nil
		}
	}
	return &apiErr{http.StatusNotFound, "ResourceNotFoundException", "Function not found: " + s.arn(f.name) + ":" + version}
}

func (s *Server) createAlias(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p, _, status, ok := s.controlCall(w, r, "CreateAlias", name)
	if !ok {
		return
	}
	aliasName, _ := p["Name"].(string)
	version, _ := p["FunctionVersion"].(string)
	description, _ := p["Description"].(string)
	fail := func(e *apiErr) {
		status(e.status)
		e.write(w)
	}
	if !aliasRE.MatchString(aliasName) || versionRE.MatchString(aliasName) {
		fail(&apiErr{http.StatusBadRequest, "ValidationException",
			"1 validation error detected: Value '" + aliasName + "' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.lookupLocked(w, "CreateAlias", name, status)
	if f == nil {
		return
	}
	if e := s.aliasVersionLocked(f, version); e != nil {
		fail(e)
		return
	}
	if f.aliases[aliasName] != nil {
		fail(&apiErr{http.StatusConflict, "ResourceConflictException", "Alias already exists: " + s.arn(f.name) + ":" + aliasName})
		return
	}
	a := &alias{name: aliasName, version: version, description: description, revision: requestID()}
	f.aliases[aliasName] = a
	status(http.StatusCreated)
	writeJSON(w, http.StatusCreated, a.config(s, f.name))
}

// aliasOf finds the alias of a request, answering 404 when there is none.
func (s *Server) aliasOf(w http.ResponseWriter, r *http.Request, op string, status func(int)) (*function, *alias) {
	f := s.lookupLocked(w, op, r.PathValue("name"), status)
	if f == nil {
		return nil, nil
	}
	a := f.aliases[r.PathValue("alias")]
	if a == nil {
		status(http.StatusNotFound)
		apiError(w, http.StatusNotFound, "ResourceNotFoundException", "Alias not found: "+s.arn(f.name)+":"+r.PathValue("alias"))
	}
	return f, a
}

func (s *Server) getAlias(w http.ResponseWriter, r *http.Request) {
	_, _, status, ok := s.controlCall(w, r, "GetAlias", r.PathValue("name"))
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, a := s.aliasOf(w, r, "GetAlias", status)
	if a == nil {
		return
	}
	status(http.StatusOK)
	writeJSON(w, http.StatusOK, a.config(s, f.name))
}

func (s *Server) updateAlias(w http.ResponseWriter, r *http.Request) {
	p, _, status, ok := s.controlCall(w, r, "UpdateAlias", r.PathValue("name"))
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, a := s.aliasOf(w, r, "UpdateAlias", status)
	if a == nil {
		return
	}
	if v, ok := p["FunctionVersion"].(string); ok {
		if e := s.aliasVersionLocked(f, v); e != nil {
			status(e.status)
			e.write(w)
			return
		}
		a.version = v
	}
	if d, ok := p["Description"].(string); ok {
		a.description = d
	}
	a.revision = requestID()
	status(http.StatusOK)
	writeJSON(w, http.StatusOK, a.config(s, f.name))
}
