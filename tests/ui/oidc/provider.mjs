// A real OpenID Connect provider (node-oidc-provider, OpenID certified) on loopback for the
// console's single sign-on test. Any user name logs in (its development login form); users
// whose name starts with "viewer" get the flightctl-viewer role, all others flightctl-operator.
// Usage: node provider.mjs PORT CLIENT_ID REDIRECT_URI
import Provider from 'oidc-provider';

const [port, clientId, redirectUri] = process.argv.slice(2);
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: clientId, redirect_uris: [redirectUri], response_types: ['code'],
    grant_types: ['authorization_code'], token_endpoint_auth_method: 'none',
  }],
  pkce: { required: () => true },
  claims: { openid: ['sub'], profile: ['preferred_username', 'name', 'groups'] },
  conformIdTokenClaims: false, // the console reads the user and role from the ID token
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({
      sub: id, preferred_username: id, name: id,
      groups: [id.startsWith('viewer') ? 'flightctl-viewer' : 'flightctl-operator'],
    }),
  }),
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['test-only-cookie-key'] },
});
provider.listen(Number(port), '127.0.0.1', () => console.log('ready'));
