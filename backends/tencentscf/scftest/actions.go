package scftest

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Function statuses, as GetFunction reports them.
const (
	statusActive   = "Active"
	statusCreating = "Creating"
	statusUpdating = "Updating"
)

type action func(s *Server, region string, p map[string]any) (map[string]any, *APIError)

var actions = map[string]action{
	"InvokeFunction":              (*Server).invokeFunction,
	"Invoke":                      (*Server).invokeAction,
	"GetFunction":                 (*Server).getFunction,
	"GetFunctionAddress":          (*Server).getFunctionAddress,
	"CreateFunction":              (*Server).createFunction,
	"UpdateFunctionCode":          (*Server).updateFunctionCode,
	"UpdateFunctionConfiguration": (*Server).updateFunctionConfiguration,
}

func str(p map[string]any, k string) (string, *APIError) {
	v, ok := p[k]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", &APIError{"InvalidParameter", fmt.Sprintf("Parameter %s must be a string.", k)}
	}
	return s, nil
}

func num(p map[string]any, k string) (int64, bool, *APIError) {
	v, ok := p[k]
	if !ok || v == nil {
		return 0, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, false, &APIError{"InvalidParameter", fmt.Sprintf("Parameter %s must be an integer.", k)}
	}
	i, err := n.Int64()
	if err != nil {
		return 0, false, &APIError{"InvalidParameter", fmt.Sprintf("Parameter %s must be an integer.", k)}
	}
	return i, true, nil
}

// lookup finds the function a call names, which must name no version or
// alias but $LATEST and $DEFAULT (the server publishes none).
func (s *Server) lookup(region string, p map[string]any) (*function, *APIError) {
	f, q, e := s.lookupAny(region, p)
	if e != nil {
		return nil, e
	}
	if !knownQualifier(q) {
		return nil, &APIError{"ResourceNotFound.Version", fmt.Sprintf("Version %s of function %s does not exist.", q, f.key.name)}
	}
	return f, nil
}

func knownQualifier(q string) bool { return q == "" || q == "$LATEST" || q == "$DEFAULT" }

// lookupAny finds the function a call names and returns the qualifier it
// names, unchecked.
func (s *Server) lookupAny(region string, p map[string]any) (*function, string, *APIError) {
	name, e := str(p, "FunctionName")
	if e != nil {
		return nil, "", e
	}
	if name == "" {
		return nil, "", &APIError{"MissingParameter", "The request is missing the parameter FunctionName."}
	}
	ns, e := str(p, "Namespace")
	if e != nil {
		return nil, "", e
	}
	if ns == "" {
		ns = "default"
	}
	q, e := str(p, "Qualifier")
	if e != nil {
		return nil, "", e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.namespaces[region][ns] {
		return nil, "", &APIError{"ResourceNotFound.Namespace", fmt.Sprintf("Namespace %s does not exist in %s.", ns, region)}
	}
	f := s.funcs[fkey{region, ns, name}]
	if f == nil {
		return nil, "", &APIError{"ResourceNotFound.Function", fmt.Sprintf("Function %s does not exist in namespace %s of %s.", name, ns, region)}
	}
	return f, q, nil
}

// logTail reads LogType: Tail asks for the execution's log in the Result.
func logTail(p map[string]any) (bool, *APIError) {
	lt, e := str(p, "LogType")
	if e != nil {
		return false, e
	}
	switch lt {
	case "", "None":
		return false, nil
	case "Tail":
		return true, nil
	}
	return false, &APIError{"InvalidParameterValue.LogType", "LogType must be None or Tail, not " + lt + "."}
}

// InvokeFunction answers a version or alias that does not exist with the
// API error ResourceNotFound.Qualifier, which the API reference lists for
// it; Invoke, whose list has no such code, with status 442
// (QualifierNotFound) in its Result.
func (s *Server) invokeFunction(region string, p map[string]any) (map[string]any, *APIError) {
	if e := s.limit(region, "InvokeFunction", s.opts.SyncRate); e != nil {
		return nil, e
	}
	f, q, e := s.lookupAny(region, p)
	if e != nil {
		return nil, e
	}
	if !knownQualifier(q) {
		return nil, &APIError{"ResourceNotFound.Qualifier", fmt.Sprintf("Version or alias %s of function %s does not exist.", q, f.key.name)}
	}
	event, e := str(p, "Event")
	if e != nil {
		return nil, e
	}
	tail, e := logTail(p)
	if e != nil {
		return nil, e
	}
	return s.invokeSync(f, q, event, tail)
}

func (s *Server) invokeAction(region string, p map[string]any) (map[string]any, *APIError) {
	if e := s.limit(region, "Invoke", s.opts.AsyncRate); e != nil {
		return nil, e
	}
	f, q, e := s.lookupAny(region, p)
	if e != nil {
		return nil, e
	}
	event, e := str(p, "ClientContext")
	if e != nil {
		return nil, e
	}
	typ, e := str(p, "InvocationType")
	if e != nil {
		return nil, e
	}
	tail, e := logTail(p)
	if e != nil {
		return nil, e
	}
	if typ != "" && typ != "RequestResponse" && typ != "Event" {
		return nil, &APIError{"InvalidParameterValue.InvokeType", "InvocationType must be RequestResponse or Event, not " + typ + "."}
	}
	if !knownQualifier(q) {
		if e := s.checkEvent(f, event); e != nil {
			return nil, e
		}
		return s.resultMap(s.count(failed(newID(), 442, fmt.Sprintf("QualifierNotFound: version or alias %s of function %s does not exist", q, f.key.name))), false), nil
	}
	if typ == "Event" {
		return s.invokeAsync(f, q, event)
	}
	return s.invokeSync(f, q, event, tail)
}

func (s *Server) checkEvent(f *function, event string) *APIError {
	s.mu.Lock()
	st := f.status
	s.mu.Unlock()
	if st != statusActive {
		return &APIError{"FailedOperation.FunctionStatusError", fmt.Sprintf("Function %s is %s; invoke it once it is Active.", f.key.name, st)}
	}
	if event != "" && !json.Valid([]byte(event)) {
		return &APIError{"InvalidParameterValue.Param", "The event is not valid JSON."}
	}
	return nil
}

// imposed asks Options.Fail about an execution about to run.
func (s *Server) imposed(f *function, qualifier, id string, async bool) *result {
	if s.opts.Fail == nil {
		return nil
	}
	fl := s.opts.Fail(Execution{Region: f.key.region, Namespace: f.key.namespace, Function: f.key.name,
		Qualifier: qualifier, RequestID: id, Async: async})
	if fl == nil {
		return nil
	}
	msg := fl.Message
	if msg == "" {
		msg = statusMessage(fl.StatusCode)
	}
	r := failedWith(id, fl.StatusCode, msg, fl.StackTrace)
	r.Log = fl.Log
	return &r
}

func (s *Server) invokeSync(f *function, qualifier, event string, tail bool) (map[string]any, *APIError) {
	if e := s.checkEvent(f, event); e != nil {
		return nil, e
	}
	if len(event) > s.opts.MaxSyncEventBytes {
		return s.resultMap(s.count(failed(newID(), 406, fmt.Sprintf("RequestTooLarge: the event of %d bytes exceeds the %d-byte limit of synchronous invocations", len(event), s.opts.MaxSyncEventBytes))), tail), nil
	}
	if r := s.imposed(f, qualifier, newID(), false); r != nil {
		return s.resultMap(s.count(*r), tail), nil
	}
	return s.resultMap(s.execute(f, event, false), tail), nil
}

func (s *Server) invokeAsync(f *function, qualifier, event string) (map[string]any, *APIError) {
	if e := s.checkEvent(f, event); e != nil {
		return nil, e
	}
	id := newID()
	if len(event) > s.opts.MaxAsyncEventBytes {
		return s.resultMap(s.count(failed(id, 406, fmt.Sprintf("RequestTooLarge: the event of %d bytes exceeds the %d-byte limit of asynchronous invocations", len(event), s.opts.MaxAsyncEventBytes))), false), nil
	}
	if r := s.imposed(f, qualifier, id, true); r != nil {
		return s.resultMap(s.count(*r), false), nil
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, &APIError{"InternalError", "The server is shutting down."}
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		r := s.execute(f, event, true)
		if s.opts.OnAsync != nil {
			s.opts.OnAsync(AsyncResult{Function: f.key.name, RequestID: id, StatusCode: r.status, RetMsg: r.RetMsg, ErrMsg: r.ErrMsg, Log: r.Log})
		}
	}()
	// The API documents every member but FunctionRequestId as empty for
	// an asynchronous invocation.
	return map[string]any{"Result": map[string]any{"FunctionRequestId": id}}, nil
}

func (s *Server) getFunction(region string, p map[string]any) (map[string]any, *APIError) {
	f, e := s.lookup(region, p)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.status != statusActive {
		if f.polls <= 0 {
			f.status = statusActive
		} else {
			f.polls--
		}
	}
	vars := []map[string]any{}
	for _, k := range sortedKeys(f.env) {
		vars = append(vars, map[string]any{"Key": k, "Value": f.env[k]})
	}
	return map[string]any{
		"FunctionName": f.key.name, "Namespace": f.key.namespace, "Status": f.status, "StatusDesc": "",
		"Runtime": f.runtime, "Handler": f.handler, "MemorySize": f.memoryMB, "Timeout": int(f.timeout / time.Second),
		"Environment": map[string]any{"Variables": vars}, "CodeSize": len(f.zip), "Type": "Event", "Qualifier": "$LATEST",
		"Role": f.role, "Description": f.description, "ModTime": f.modTime.Format(time.DateTime), "StatusReasons": []any{},
	}, nil
}

// getFunctionAddress answers with the hex SHA-256 of the code package last
// uploaded, which is what the tencentscf deployer compares with its own;
// SCF documents its CodeSha256 only as the function's SHA-256. Url is
// empty: the server serves no downloads. A function added with
// AddFunction has no code package and no hash.
func (s *Server) getFunctionAddress(region string, p map[string]any) (map[string]any, *APIError) {
	f, e := s.lookup(region, p)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := ""
	if f.zip != nil {
		h := sha256.Sum256(f.zip)
		sum = hex.EncodeToString(h[:])
	}
	return map[string]any{"Url": "", "CodeSha256": sum}, nil
}

// config is what CreateFunction and UpdateFunctionConfiguration may set.
type config struct {
	memoryMB    int
	timeout     time.Duration
	env         map[string]string
	runtime     string
	role        string
	description string
	setEnv      bool
}

func (s *Server) readConfig(p map[string]any, c *config) *APIError {
	if m, ok, e := num(p, "MemorySize"); e != nil {
		return e
	} else if ok {
		if m != 64 && (m < 128 || m > 3072 || m%128 != 0) {
			return &APIError{"InvalidParameterValue.MemorySize", fmt.Sprintf("MemorySize %d is not 64 or a multiple of 128 from 128 to 3072.", m)}
		}
		c.memoryMB = int(m)
	}
	if t, ok, e := num(p, "Timeout"); e != nil {
		return e
	} else if ok {
		if t < 1 || t > 900 {
			return &APIError{"InvalidParameterValue", fmt.Sprintf("Timeout %d is not within 1-900 seconds.", t)}
		}
		c.timeout = time.Duration(t) * time.Second
	}
	if rt, e := str(p, "Runtime"); e != nil {
		return e
	} else if rt != "" {
		if rt != "Go1" {
			return &APIError{"InvalidParameterValue.Runtime", "This server runs the Go1 runtime only, not " + rt + "."}
		}
		c.runtime = rt
	}
	if role, e := str(p, "Role"); e != nil {
		return e
	} else if role != "" {
		c.role = role
	}
	if desc, e := str(p, "Description"); e != nil {
		return e
	} else if desc != "" {
		c.description = desc
	}
	if v, ok := p["Environment"]; ok && v != nil {
		m, ok := v.(map[string]any)
		vars, ok2 := m["Variables"].([]any)
		if !ok || (!ok2 && m["Variables"] != nil) {
			return &APIError{"InvalidParameterValue.Environment", "Environment must be {\"Variables\": [{\"Key\":...,\"Value\":...}]}."}
		}
		env := map[string]string{}
		size := 0
		for _, x := range vars {
			kv, _ := x.(map[string]any)
			k, _ := kv["Key"].(string)
			val, _ := kv["Value"].(string)
			if k == "" {
				return &APIError{"InvalidParameterValue.Environment", "An environment variable has no Key."}
			}
			env[k] = val
			size += len(k) + len(val)
		}
		if size > 4<<10 {
			return &APIError{"InvalidParameterValue.EnvironmentExceededLimit", "The environment variables exceed 4 KB."}
		}
		c.env, c.setEnv = env, true
	}
	return nil
}

func (s *Server) createFunction(region string, p map[string]any) (map[string]any, *APIError) {
	name, e := str(p, "FunctionName")
	if e != nil {
		return nil, e
	}
	if name == "" {
		return nil, &APIError{"MissingParameter", "The request is missing the parameter FunctionName."}
	}
	ns, e := str(p, "Namespace")
	if e != nil {
		return nil, e
	}
	if ns == "" {
		ns = "default"
	}
	handler, e := str(p, "Handler")
	if e != nil {
		return nil, e
	}
	c := config{memoryMB: 128, timeout: 3 * time.Second, runtime: "Python2.7"}
	if e := s.readConfig(p, &c); e != nil {
		return nil, e
	}
	if c.runtime != "Go1" {
		return nil, &APIError{"InvalidParameterValue.Runtime", "This server runs the Go1 runtime only; pass Runtime Go1."}
	}
	code, _ := p["Code"].(map[string]any)
	zipB64, e := str(code, "ZipFile")
	if e != nil {
		return nil, e
	}
	if zipB64 == "" {
		return nil, &APIError{"MissingParameter.Code", "The request has no Code.ZipFile."}
	}
	k := fkey{region, ns, name}
	s.mu.Lock()
	nsOK := s.namespaces[region][ns]
	exists := s.funcs[k] != nil
	s.mu.Unlock()
	if !nsOK {
		return nil, &APIError{"ResourceNotFound.Namespace", fmt.Sprintf("Namespace %s does not exist in %s.", ns, region)}
	}
	if exists {
		return nil, &APIError{"ResourceInUse.Function", fmt.Sprintf("Function %s already exists.", name)}
	}
	zipBytes, path, e := s.extract(k, 1, zipB64, handler)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.funcs[k] != nil {
		return nil, &APIError{"ResourceInUse.Function", fmt.Sprintf("Function %s already exists.", name)}
	}
	s.funcs[k] = &function{
		key: k, status: statusCreating, polls: s.opts.ActivationPolls, command: []string{path}, runtime: c.runtime, handler: handler,
		memoryMB: c.memoryMB, timeout: c.timeout, env: c.env, role: c.role, description: c.description, zip: zipBytes, version: 1,
		instances: map[*instance]bool{}, modTime: time.Now(),
	}
	return nil, nil
}

func (s *Server) updateFunctionCode(region string, p map[string]any) (map[string]any, *APIError) {
	f, e := s.lookup(region, p)
	if e != nil {
		return nil, e
	}
	handler, e := str(p, "Handler")
	if e != nil {
		return nil, e
	}
	zipB64, e := str(p, "ZipFile")
	if e != nil {
		return nil, e
	}
	if code, ok := p["Code"].(map[string]any); ok && zipB64 == "" {
		if zipB64, e = str(code, "ZipFile"); e != nil {
			return nil, e
		}
	}
	if zipB64 == "" {
		return nil, &APIError{"MissingParameter.Code", "The request has no ZipFile."}
	}
	s.mu.Lock()
	if handler == "" {
		handler = f.handler
	}
	st, next := f.status, f.version+1
	s.mu.Unlock()
	if st != statusActive {
		return nil, &APIError{"FailedOperation.UpdateFunctionCode", fmt.Sprintf("Function %s is %s; update it once it is Active.", f.key.name, st)}
	}
	zipBytes, path, e := s.extract(f.key, next, zipB64, handler)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	f.command, f.handler, f.zip = []string{path}, handler, zipBytes
	s.changedLocked(f)
	s.mu.Unlock()
	return nil, nil
}

func (s *Server) updateFunctionConfiguration(region string, p map[string]any) (map[string]any, *APIError) {
	f, e := s.lookup(region, p)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	c := config{memoryMB: f.memoryMB, timeout: f.timeout, env: f.env, runtime: f.runtime, role: f.role, description: f.description}
	st := f.status
	s.mu.Unlock()
	if st != statusActive {
		return nil, &APIError{"FailedOperation.UpdateFunctionConfiguration", fmt.Sprintf("Function %s is %s; update it once it is Active.", f.key.name, st)}
	}
	if e := s.readConfig(p, &c); e != nil {
		return nil, e
	}
	s.mu.Lock()
	f.memoryMB, f.timeout, f.env, f.runtime, f.role, f.description = c.memoryMB, c.timeout, c.env, c.runtime, c.role, c.description
	s.changedLocked(f)
	s.mu.Unlock()
	return nil, nil
}

// changedLocked starts an update: the function is Updating for a few
// polls, and its idle instances, which run the old code or configuration,
// are stopped. The caller holds s.mu.
func (s *Server) changedLocked(f *function) {
	f.version++
	f.modTime = time.Now()
	f.status, f.polls = statusUpdating, s.opts.ActivationPolls
	if f.polls < 0 {
		f.status = statusActive
	}
	idle := f.idle
	f.idle = nil
	for _, in := range idle {
		s.killAsync(in)
	}
}

// extract decodes a base64 zip and writes the executable handler from it
// to the server's directory, as SCF unpacks a Go function's code package.
func (s *Server) extract(k fkey, version int, zipB64, handler string) ([]byte, string, *APIError) {
	if handler == "" {
		return nil, "", &APIError{"InvalidParameterValue.Handler", "Handler names no file."}
	}
	data, err := base64.StdEncoding.DecodeString(zipB64)
	if err != nil {
		return nil, "", &APIError{"InvalidParameterValue.ZipFileBase64BinasciiError", "ZipFile is not valid base64: " + err.Error()}
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, "", &APIError{"InvalidParameterValue.ZipFile", "ZipFile is not a zip archive: " + err.Error()}
	}
	var exe *zip.File
	for _, f := range zr.File {
		if f.Name == handler {
			exe = f
		}
	}
	if exe == nil {
		return nil, "", &APIError{"InvalidParameterValue.Handler", fmt.Sprintf("The code package has no file %q at its root for Handler %q.", handler, handler)}
	}
	if exe.Mode()&0o111 == 0 || !exe.Mode().IsRegular() {
		return nil, "", &APIError{"InvalidParameterValue.Handler", fmt.Sprintf("%q in the code package is not an executable file (mode %v).", handler, exe.Mode())}
	}
	dir := filepath.Join(s.workDir, k.region, k.namespace, k.name, "v"+strconv.Itoa(version))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", &APIError{"InternalError", err.Error()}
	}
	path := filepath.Join(dir, filepath.Base(handler))
	rc, err := exe.Open()
	if err != nil {
		return nil, "", &APIError{"InvalidParameterValue.ZipFile", err.Error()}
	}
	defer rc.Close()
	out, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return nil, "", &APIError{"InternalError", err.Error()}
	}
	_, err = io.Copy(out, rc)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, "", &APIError{"InvalidParameterValue.ZipFile", err.Error()}
	}
	return data, path, nil
}
