// A real OpenID Connect provider (node-oidc-provider, OpenID certified) on loopback for the
// single sign-on tests. Any user name logs in (its development login form); users whose name
// starts with "viewer" get the flightctl-viewer role, all others flightctl-operator.
// Usage: node provider.mjs PORT CLIENT_ID REDIRECT_URI [SETUP.json]
// SETUP.json (tests/test_login_web.py) adds clients ({client_id, client_secret,
// redirect_uris, ...}, which may use refresh tokens) and the claims of named accounts
// ({"accounts": {"alice": {"groups": [...], "organizations": [...]}}}).
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const [port, clientId, redirectUri, setupFile] = process.argv.slice(2);
const setup = setupFile ? JSON.parse(readFileSync(setupFile, 'utf8')) : {};
const accounts = setup.accounts || {};
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: clientId, redirect_uris: [redirectUri], response_types: ['code'],
    grant_types: ['authorization_code'], token_endpoint_auth_method: 'none',
  }, ...(setup.clients || []).map((client) => ({
    response_types: ['code'], grant_types: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_method: 'client_secret_post', ...client,
  }))],
  pkce: { required: () => true },
  claims: { openid: ['sub'], profile: ['preferred_username', 'name', 'groups', 'organizations'] },
  conformIdTokenClaims: false, // the console reads the user and role from the ID token
  // A refresh token for every client allowed the grant (no offline_access consent dance).
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({
      sub: id, preferred_username: id, name: id,
      groups: [id.startsWith('viewer') ? 'flightctl-viewer' : 'flightctl-operator'],
      ...(accounts[id] || {}),
    }),
  }),
  // Revocation and introspection (RFC 7009, 7662): a test revokes an opaque access token and
  // sees our server refuse it, at the userinfo or the introspection endpoint.
  features: {
    devInteractions: { enabled: true }, revocation: { enabled: true },
    introspection: { enabled: true },
  },
  cookies: { keys: ['test-only-cookie-key'] },
});
provider.listen(Number(port), '127.0.0.1', () => console.log('ready'));
