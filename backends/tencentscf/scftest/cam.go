package scftest

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
)

// CAM. The server also answers the four actions of Tencent Cloud's CAM API
// (service "cam", version 2019-01-16) that `gowren deploy scf` makes to let
// a function's execution role invoke the function: GetUserAppId,
// CreatePolicy, UpdatePolicy and AttachRolePolicy, signed with TC3 for
// service "cam" and sent to the same endpoint (a client whose endpoint is
// set sends every service there, as the SDK does). A role exists when a
// function runs as it or a Credential is its keys. The account's UIN is
// Options.OwnerUin.
//
// Sources: CAM API reference, CreatePolicy (598/34578), UpdatePolicy
// (598/34569), AttachRolePolicy (598/36226), GetUserAppId (598/34582), and
// the error codes of the cam/v20190116 package of tencentcloud-sdk-go.

const (
	camService = "cam"
	camVersion = "2019-01-16"
	// DefaultOwnerUin is the account UIN GetUserAppId answers by default.
	DefaultOwnerUin = "100000000001"
	// defaultAppID is the account's APPID.
	defaultAppID = 1250000000
)

var camPolicyName = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)

type camAction func(s *Server, p map[string]any) (map[string]any, *APIError)

var camActions = map[string]camAction{
	"GetUserAppId":     (*Server).camGetUserAppID,
	"CreatePolicy":     (*Server).camCreatePolicy,
	"UpdatePolicy":     (*Server).camUpdatePolicy,
	"AttachRolePolicy": (*Server).camAttachRolePolicy,
}

func (s *Server) ownerUin() string {
	if s.opts.OwnerUin != "" {
		return s.opts.OwnerUin
	}
	return DefaultOwnerUin
}

func (s *Server) camGetUserAppID(map[string]any) (map[string]any, *APIError) {
	return map[string]any{"Uin": s.ownerUin(), "OwnerUin": s.ownerUin(), "AppId": defaultAppID}, nil
}

// policyDoc checks a policy document: JSON with a version and statements.
func policyDoc(p map[string]any) (string, *APIError) {
	doc, e := str(p, "PolicyDocument")
	if e != nil {
		return "", e
	}
	var d struct {
		Version   string           `json:"version"`
		Statement []map[string]any `json:"statement"`
	}
	switch {
	case doc == "":
		return "", &APIError{"MissingParameter", "The request is missing the parameter PolicyDocument."}
	case json.Unmarshal([]byte(doc), &d) != nil:
		return "", &APIError{"InvalidParameter.PolicyDocumentError", "PolicyDocument is not valid JSON."}
	case d.Version == "":
		return "", &APIError{"InvalidParameter.VersionError", "The policy document has no version."}
	case len(d.Statement) == 0:
		return "", &APIError{"InvalidParameter.StatementError", "The policy document has no statement."}
	}
	return doc, nil
}

func (s *Server) camCreatePolicy(p map[string]any) (map[string]any, *APIError) {
	name, e := str(p, "PolicyName")
	if e != nil {
		return nil, e
	}
	if !camPolicyName.MatchString(name) {
		return nil, &APIError{"InvalidParameter.PolicyNameError", "PolicyName " + strconv.Quote(name) + " is not valid."}
	}
	doc, e := policyDoc(p)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.camPolicies[name]; ok {
		return nil, &APIError{"FailedOperation.PolicyNameInUse", "The policy name " + name + " is already in use."}
	}
	if s.camPolicies == nil {
		s.camPolicies = map[string]string{}
	}
	s.camPolicies[name] = doc
	return map[string]any{"PolicyId": 10000 + len(s.camPolicies)}, nil
}

func (s *Server) camUpdatePolicy(p map[string]any) (map[string]any, *APIError) {
	name, e := str(p, "PolicyName")
	if e != nil {
		return nil, e
	}
	doc, e := policyDoc(p)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.camPolicies[name]; !ok {
		return nil, &APIError{"ResourceNotFound.PolicyIdNotFound", "No policy is named " + name + "."}
	}
	s.camPolicies[name] = doc
	return map[string]any{}, nil
}

func (s *Server) camAttachRolePolicy(p map[string]any) (map[string]any, *APIError) {
	name, e := str(p, "PolicyName")
	if e != nil {
		return nil, e
	}
	role, e := str(p, "AttachRoleName")
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.camPolicies[name]; !ok {
		return nil, &APIError{"ResourceNotFound.PolicyIdNotFound", "No policy is named " + name + "."}
	}
	if !s.roleExists(role) {
		return nil, &APIError{"InvalidParameter.RoleNotExist", "The role " + strconv.Quote(role) + " does not exist."}
	}
	if s.camAttached == nil {
		s.camAttached = map[string][]string{}
	}
	if !slices.Contains(s.camAttached[role], name) {
		s.camAttached[role] = append(s.camAttached[role], name)
	}
	return map[string]any{}, nil
}

// roleExists reports whether a function runs as role or credentials are
// its keys. The caller holds s.mu.
func (s *Server) roleExists(role string) bool {
	for _, f := range s.funcs {
		if f.role == role {
			return true
		}
	}
	for _, c := range s.opts.Credentials {
		if c.Role == role {
			return true
		}
	}
	return false
}

// RolePolicies returns the documents of the policies attached to role, by
// policy name.
func (s *Server) RolePolicies(role string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for _, name := range s.camAttached[role] {
		out[name] = s.camPolicies[name]
	}
	return out
}

// camCall runs a CAM action. The caller has verified the request.
func (s *Server) camCall(action string, params map[string]any) (map[string]any, *APIError) {
	act := camActions[action]
	if act == nil {
		names := make([]string, 0, len(camActions))
		for n := range camActions {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, &APIError{"InvalidAction", fmt.Sprintf("CAM has no action %s (this server implements %v).", action, names)}
	}
	return act(s, params)
}
