// An independent OpenID Provider for Gatehouse's sign-in tests: the certified `oidc-provider` package on
// 127.0.0.1, with a login page, a consent page, and users and groups read from a JSON file at every sign-in
// (so a test changes a user's groups by rewriting the file).
//
//   node provider.js CONFIG.json
//
// CONFIG: {"client": {"client_id", "client_secret", "redirect_uris": [...]},
//          "users": {"<login>": {"password", "email", "email_verified", "name", "groups": [...]}}}
// It listens on a free port and prints one line, `listening on http://127.0.0.1:PORT`, when it is ready.
// Stricter than the defaults where the tests need proof: PKCE (S256) and a nonce are required on every
// authorization request, and an authorization code works once.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: node provider.js CONFIG.json');
  process.exit(2);
}
const readConfig = () => JSON.parse(fs.readFileSync(configPath, 'utf8'));

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>`
    + `<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

async function formBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(html);
}

function findUser(login) {
  const users = readConfig().users || {};
  return Object.hasOwn(users, login) ? users[login] : null;
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const { client } = readConfig();
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-signing-key', use: 'sig', alg: 'RS256' };

  const provider = new Provider(issuer, {
    clients: [{
      client_id: client.client_id,
      client_secret: client.client_secret,
      redirect_uris: client.redirect_uris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
    }],
    jwks: { keys: [jwk] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    pkce: { required: () => true },
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, sub) {
      const user = findUser(sub);
      if (!user) return undefined;
      return {
        accountId: sub,
        async claims() {
          // Read again now: a test that changed the file sees the new groups at the next sign-in.
          const now = findUser(sub) || user;
          return {
            sub,
            email: now.email,
            email_verified: Boolean(now.email_verified),
            name: now.name || sub,
            preferred_username: sub,
            groups: now.groups || [],
          };
        },
      };
    },
  });

  // A nonce on every authorization request (the core spec makes it optional for the code flow).
  provider.use(async (ctx, next) => {
    if (ctx.path === '/auth' && !(ctx.query.nonce || '').length) {
      ctx.status = 400;
      ctx.type = 'text/plain';
      ctx.body = 'invalid_request: this provider requires a nonce';
      return;
    }
    await next();
  });

  const oidc = provider.callback();

  async function interaction(req, res, uid, action) {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) return send(res, 400, page('Error', '<p>Unknown interaction.</p>'));
    const { prompt, params, session } = details;
    const form = req.method === 'POST' ? await formBody(req) : new URLSearchParams();

    if (prompt.name === 'login') {
      if (action === 'login' && req.method === 'POST') {
        const login = form.get('login') || '';
        const user = findUser(login);
        if (user && crypto.timingSafeEqual(
          crypto.createHash('sha256').update(form.get('password') || '').digest(),
          crypto.createHash('sha256').update(user.password || '').digest(),
        )) {
          return provider.interactionFinished(req, res, { login: { accountId: login } },
            { mergeWithLastSubmission: false });
        }
      }
      const failed = action === 'login' ? '<p id="error">Wrong login or password.</p>' : '';
      return send(res, 200, page('Sign in to the test identity provider', `${failed}
        <form method="post" action="/interaction/${escapeHtml(uid)}/login">
          <label>Login <input name="login" autocomplete="username" autofocus></label>
          <label>Password <input name="password" type="password" autocomplete="current-password"></label>
          <button type="submit">Sign in</button>
        </form>`));
    }

    if (prompt.name === 'consent') {
      if (action === 'confirm' && req.method === 'POST') {
        const grant = details.grantId
          ? await provider.Grant.find(details.grantId)
          : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
        const missing = prompt.details;
        if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
        if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
        if (missing.missingResourceScopes) {
          for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
            grant.addResourceScope(indicator, scopes.join(' '));
          }
        }
        const grantId = await grant.save();
        return provider.interactionFinished(req, res, { consent: { grantId } },
          { mergeWithLastSubmission: true });
      }
      const scopes = (prompt.details.missingOIDCScope || []).map((s) => `<li>${escapeHtml(s)}</li>`).join('');
      return send(res, 200, page('Allow access', `
        <p>${escapeHtml(params.client_id)} asks for:</p><ul>${scopes}</ul>
        <form method="post" action="/interaction/${escapeHtml(uid)}/confirm">
          <button type="submit">Allow</button>
        </form>`));
    }
    return send(res, 400, page('Error', '<p>Unsupported prompt.</p>'));
  }

  server.on('request', (req, res) => {
    const match = /^\/interaction\/([\w-]+)(?:\/(login|confirm))?$/.exec(req.url.split('?')[0]);
    if (!match) return oidc(req, res);
    return interaction(req, res, match[1], match[2]).catch((err) => {
      send(res, 400, page('Error', `<p>${escapeHtml(err.message)}</p>`));
    });
  });

  console.log(`listening on ${issuer}`);
});
