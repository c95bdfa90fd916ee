// The demo page's logic: what an Outlook add-in does with relay-client.js.
import { RelayClient, RelayError } from '../relay-client.js';

const $ = (id) => document.getElementById(id);

// Settings from the URL fragment (never sent to a server): #relay=…&instance=…&key=…
const fragment = new URLSearchParams(location.hash.slice(1));
for (const [param, id] of [['relay', 'relay'], ['instance', 'instance'], ['key', 'key'],
  ['conversation', 'conversation'], ['mail', 'mail'], ['user', 'user'],
  ['issueKey', 'issue-key'], ['issueId', 'issue-id'], ['auth', 'jira-auth']]) {
  if (fragment.has(param)) $(id).value = fragment.get(param);
}

function log(line) {
  $('log').textContent += `${new Date().toISOString().slice(11, 23)} ${line}\n`;
}

function client() {
  return new RelayClient({
    baseUrl: $('relay').value.trim(),
    instanceId: $('instance').value.trim(),
    clientKey: $('key').value.trim(),
    onRetry: ({ attempt, delayMs, status }) => log(`retry ${attempt} in ${delayMs} ms after ${status}`),
  });
}

/**
 * The file as base64, as Office.js gives an attachment
 * (item.getAttachmentContentAsync → {format: "base64", content}).
 */
function readAsBase64(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => {
      const url = String(r.result); // data:<type>;base64,<content>
      resolve(url.slice(url.indexOf(',') + 1));
    };
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

function show(el, state, text, data = {}) {
  el.dataset.state = state;
  for (const [k, v] of Object.entries(data)) el.dataset[k] = v;
  el.textContent = text;
}

function describe(e) {
  if (e instanceof RelayError) return `${e.status} ${e.code}: ${e.message}`;
  return String(e?.message || e);
}

$('upload').addEventListener('click', async () => {
  const out = $('upload-result');
  const file = $('file').files[0];
  if (!file) { show(out, 'error', 'choose a file first'); return; }
  show(out, 'busy', `uploading ${file.name} (${file.size} bytes)…`);
  try {
    const base64 = await readAsBase64(file);
    const attachments = await client().uploadAttachment({
      issueIdOrKey: $('issue-key').value.trim(),
      base64,
      filename: file.name,
      contentType: file.type || 'application/octet-stream',
      jiraAuthorization: $('jira-auth').value,
    });
    const a = attachments[0];
    show(out, 'done', `attached ${a.filename} (${a.size} bytes) as attachment ${a.id}`, { attachmentId: a.id, size: String(a.size) });
    log(`upload: Jira created attachment ${a.id}`);
  } catch (e) {
    show(out, 'error', describe(e), { status: String(e.status ?? ''), code: e.code || '' });
    log(`upload failed: ${describe(e)}`);
  }
});

$('link').addEventListener('click', async () => {
  const out = $('link-result');
  show(out, 'busy', 'linking…');
  try {
    const { created } = await client().linkMapping({
      conversationId: $('conversation').value,
      mailId: $('mail').value,
      userId: $('user').value,
      app: 'outlook-demo',
      jira: { id: $('issue-id').value.trim(), key: $('issue-key').value.trim() },
    });
    show(out, 'done', created ? 'linked' : 'linked already', { created: String(created) });
    log(`link: ${created ? 'new' : 'existing'} mapping`);
  } catch (e) {
    show(out, 'error', describe(e), { status: String(e.status ?? ''), code: e.code || '' });
    log(`link failed: ${describe(e)}`);
  }
});

$('related').addEventListener('click', async () => {
  const list = $('related-list');
  list.replaceChildren();
  list.dataset.state = 'busy';
  try {
    // Every mapping of the conversation, by issue.
    const byKey = new Map();
    for await (const m of client().iterateMappings({ conversationId: $('conversation').value, limit: 100 })) {
      const mails = byKey.get(m.jira.key) || new Set();
      mails.add(m.mailId);
      byKey.set(m.jira.key, mails);
    }
    for (const [key, mails] of byKey) {
      const li = document.createElement('li');
      li.dataset.key = key;
      li.textContent = `${key} (${mails.size} mail${mails.size === 1 ? '' : 's'})`;
      list.append(li);
    }
    list.dataset.state = 'done';
    list.dataset.count = String(byKey.size);
    log(`related: ${byKey.size} issue(s)`);
  } catch (e) {
    list.dataset.state = 'error';
    list.textContent = describe(e);
    log(`related failed: ${describe(e)}`);
  }
});
