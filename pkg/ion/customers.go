package ion

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// decodeJSON is the handle for small JSON responses. Any decode failure is a BodyError (and
// so retried: nothing reached the caller yet).
func decodeJSON(path string, out any) func(*http.Response) error {
	return func(resp *http.Response) error {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return &BodyError{Path: path, Reason: describeJSONErr(err)}
		}
		return nil
	}
}

// describeJSONErr keeps decode errors free of body content (bodies may hold personal data).
func describeJSONErr(err error) string {
	switch e := err.(type) {
	case *json.SyntaxError:
		return fmt.Sprintf("syntax error at byte %d", e.Offset)
	case *json.UnmarshalTypeError:
		return fmt.Sprintf("field %q: unexpected %s", e.Field, e.Value)
	}
	if err.Error() == "unexpected EOF" || err.Error() == "EOF" {
		return "truncated"
	}
	return "malformed JSON"
}

func (c *Client) getJSON(ctx context.Context, auth authKind, path string, q url.Values, out any) error {
	return c.do(ctx, call{method: http.MethodGet, path: path, query: q, auth: auth, handle: decodeJSON(path, out)})
}

// Address is a customer's postal address.
type Address struct {
	Street  string `json:"street"`
	Suite   string `json:"suite"`
	City    string `json:"city"`
	State   string `json:"state"`
	Zip     string `json:"zip"`
	Country string `json:"country"`
}

// Customer is a v3 customer (ListCustomer / GetCustomerResponse).
type Customer struct {
	ID           string  `json:"-"`    // from Name, without "accounts/{a}/customers/"
	Name         string  `json:"name"` // resource name
	Organization string  `json:"customerOrganization"`
	Address      Address `json:"customerAddress"`
	ContactName  string  `json:"customerName"`
	Email        string  `json:"customerEmail"`
	Title        string  `json:"customerTitle"`
	Phone        string  `json:"customerPhone"`
	CreateTime   Time    `json:"createTime"`
	UpdateTime   Time    `json:"updateTime"`
	LanguageCode string  `json:"languageCode"`
	UID          string  `json:"uid"`
	Status       string  `json:"customerStatus"`
}

// customerID strips the resource prefix: "accounts/1/customers/42" → "42".
func customerID(name string) string {
	if i := strings.LastIndex(name, "/customers/"); i >= 0 {
		return name[i+len("/customers/"):]
	}
	return strings.TrimPrefix(name, "customers/")
}

// ListCustomers returns every customer of the account, following nextPageToken. pageSize is
// required by Ion; 0 means 1000 (what TD's own scripts use).
func (c *Client) ListCustomers(ctx context.Context, pageSize int) ([]Customer, error) {
	if pageSize <= 0 {
		pageSize = 1000
	}
	path := c.v3("/customers")
	var all []Customer
	seen := map[string]bool{}
	token := ""
	for {
		q := url.Values{"pageSize": {strconv.Itoa(pageSize)}}
		if token != "" {
			q.Set("pageToken", token)
		}
		var page struct {
			Customers     []Customer `json:"customers"`
			NextPageToken string     `json:"nextPageToken"`
		}
		if err := c.getJSON(ctx, authV3, path, q, &page); err != nil {
			return nil, err
		}
		for _, cu := range page.Customers {
			cu.ID = customerID(cu.Name)
			all = append(all, cu)
		}
		if page.NextPageToken == "" {
			return all, nil
		}
		// A server echoing a token it already gave would loop forever.
		if seen[page.NextPageToken] {
			return nil, &BodyError{Path: path, Reason: "nextPageToken repeats"}
		}
		seen[page.NextPageToken] = true
		token = page.NextPageToken
	}
}

// GetCustomer returns one customer; a missing one is an error matching ErrNotFound.
func (c *Client) GetCustomer(ctx context.Context, customerID string) (Customer, error) {
	var cu Customer
	err := c.getJSON(ctx, authV3, c.v3("/customers/%s", url.PathEscape(customerID)), nil, &cu)
	if err != nil {
		return Customer{}, err
	}
	cu.ID = customerIDOr(cu.Name, customerID)
	return cu, nil
}

func customerIDOr(name, fallback string) string {
	if name == "" {
		return fallback
	}
	return customerID(name)
}

// CloudProfile links an Ion customer to a cloud tenant (for Microsoft: the Entra tenant id).
type CloudProfile struct {
	ProviderID       ID     `json:"providerId"`
	DisplayName      string `json:"displayName"`
	ShortName        string `json:"shortName"`
	Enabled          bool   `json:"enabled"`
	CustomerTenantID string `json:"customerTenantId"`
	CustomerDomain   string `json:"customerDomain"`
	GDAPStatus       string `json:"gdapStatus"`
	AgreementStatus  string `json:"agreementStatus"`
}

// CloudProfiles returns the customer's enabled Microsoft CSP profiles (providerId=30).
func (c *Client) CloudProfiles(ctx context.Context, customerID string) ([]CloudProfile, error) {
	var r struct {
		CustomerID           ID             `json:"customerId"`
		CustomerOrganization string         `json:"customerOrganization"`
		Profiles             []CloudProfile `json:"customerCloudProfiles"`
	}
	q := url.Values{"providerId": {ProviderMicrosoft}, "enabledOnly": {"true"}}
	if err := c.getJSON(ctx, authV3, c.v3("/customers/%s/cloudProfiles", url.PathEscape(customerID)), q, &r); err != nil {
		return nil, err
	}
	return r.Profiles, nil
}

// ProviderMicrosoft is Ion's cloud provider id for Microsoft CSP.
const ProviderMicrosoft = "30"
