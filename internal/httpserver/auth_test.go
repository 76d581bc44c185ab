package httpserver

import "testing"

func TestTokenOK(t *testing.T) {
	t.Parallel()
	const token = "s3cret-token-0123456789"
	tests := []struct {
		name, header, token string
		want                bool
	}{
		{"Right", "Bearer " + token, token, true},
		{"Wrong", "Bearer nope", token, false},
		{"PrefixOfToken", "Bearer " + token[:10], token, false},
		{"TokenPlusMore", "Bearer " + token + "x", token, false},
		{"NoBearerScheme", token, token, false},
		{"BasicScheme", "Basic " + token, token, false},
		{"Empty", "", token, false},
		{"NoTokenConfiguredAcceptsNothing", "Bearer ", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := TokenOK(tt.header, tt.token); got != tt.want {
				t.Errorf("TokenOK(%q) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}

func TestRequiresToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		listen string
		want   bool
	}{
		{"127.0.0.1:8080", false},
		{"127.3.4.5:8080", false},
		{"[::1]:8080", false},
		{"localhost:8080", false},
		{"0.0.0.0:8080", true},
		{":8080", true},
		{"[::]:8080", true},
		{"10.0.0.5:8080", true},
		{"ebb.internal:8080", true},
		{"garbage", true},
	}
	for _, tt := range tests {
		if got := RequiresToken(tt.listen); got != tt.want {
			t.Errorf("RequiresToken(%q) = %v, want %v", tt.listen, got, tt.want)
		}
	}
}
