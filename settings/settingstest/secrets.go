// Package settingstest holds test doubles for package settings.
package settingstest

import (
	"context"
	"sync"

	"snapback/settings"
)

// Secrets is an in-memory settings.Secrets for tests that do not need a real keychain.
// The zero value is empty and ready; NewSecrets pre-fills it. Safe for concurrent use.
type Secrets struct {
	mu sync.Mutex
	m  map[string]string
}

// NewSecrets returns a Secrets holding the given UDID → password entries.
func NewSecrets(entries map[string]string) *Secrets {
	s := &Secrets{m: map[string]string{}}
	for k, v := range entries {
		s.m[k] = v
	}
	return s
}

// Get returns the password of udid, or settings.ErrSecretNotFound.
func (s *Secrets) Get(_ context.Context, udid string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pw, ok := s.m[udid]
	if !ok {
		return "", settings.ErrSecretNotFound
	}
	return pw, nil
}

// Set stores the password of udid.
func (s *Secrets) Set(_ context.Context, udid, pw string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]string{}
	}
	s.m[udid] = pw
	return nil
}

// Delete forgets the password of udid; settings.ErrSecretNotFound if there was none.
func (s *Secrets) Delete(_ context.Context, udid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[udid]; !ok {
		return settings.ErrSecretNotFound
	}
	delete(s.m, udid)
	return nil
}
