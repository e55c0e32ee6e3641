/* flaskbb-flaskbbd: passkeys (WebAuthn) on the forum's pages, served by the bridge.
 *
 * Sign-in (.flaskbbd-passkey-signin: the login page, reauthentication, the code step):
 * asks the bridge for the options of a sign-in, lets the browser sign them
 * (navigator.credentials.get; on the login page also as autofill, with mediation
 * "conditional"), and posts the answer back; the bridge signs the member in and
 * answers where to go (the page there shows FlaskBB's message on a refusal).
 * Adding (.flaskbbd-passkey-add, the Security page): the same with
 * navigator.credentials.create. The daemon's options and answers are JSON with
 * base64url strings where WebAuthn has bytes. Without JavaScript or WebAuthn
 * nothing here is shown, and the password form works as ever. */
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !window.fetch) { return; }

  function bytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out.buffer;
  }

  function text(buffer) {
    if (!buffer) { return null; }
    var raw = "", view = new Uint8Array(buffer);
    for (var i = 0; i < view.length; i++) { raw += String.fromCharCode(view[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function ids(list) {
    (list || []).forEach(function (c) { c.id = bytes(c.id); });
  }

  function post(url, body) {
    var token = document.querySelector('meta[name="csrf-token"]');
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": token ? token.content : "" },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      if (!r.ok) { throw new Error("the forum answered " + r.status); }
      return r.json();
    });
  }

  function follow(answer) {
    if (answer.redirect) { window.location.assign(answer.redirect); }
    return answer;
  }

  function say(box, message) {
    var p = box.querySelector(".flaskbbd-passkey-message");
    if (p) { p.textContent = message; p.hidden = !message; }
  }

  function failed(box, error) {
    if (error && error.name === "AbortError") { return; }
    say(box, error && error.name === "NotAllowedError" ? box.dataset.cancelled : box.dataset.failed);
  }

  function signIn(box) {
    var conditional = null;
    var options = box.dataset.options, finish = box.dataset.finish + window.location.search;

    function requestOptions() {
      return post(options).then(function (answer) {
        if (!answer.available) { return null; }
        var pk = answer.options.publicKey;
        pk.challenge = bytes(pk.challenge);
        ids(pk.allowCredentials);
        return pk;
      });
    }

    function signed(credential) {
      var remember = document.querySelector('input[name="remember_me"]');
      var r = credential.response;
      return post(finish, {
        remember: !!(remember && remember.checked),
        credential: {
          id: credential.id,
          rawId: text(credential.rawId),
          type: credential.type,
          response: {
            authenticatorData: text(r.authenticatorData),
            clientDataJSON: text(r.clientDataJSON),
            signature: text(r.signature),
            userHandle: text(r.userHandle)
          },
          extensions: {}
        }
      }).then(follow);
    }

    function autofill(pk) {
      if (!box.dataset.conditional || !PublicKeyCredential.isConditionalMediationAvailable) { return; }
      PublicKeyCredential.isConditionalMediationAvailable().then(function (yes) {
        if (!yes) { return; }
        conditional = new AbortController();
        return navigator.credentials.get({ publicKey: pk, mediation: "conditional", signal: conditional.signal })
          .then(signed);
      }).catch(function (e) {
        // Autofill given up (for the button) or not taken: nothing to say.
        if (e && e.name !== "AbortError" && e.name !== "NotAllowedError") { failed(box, e); }
      });
    }

    // Passkeys offered here (the daemon has [webauthn]): the button, and autofill.
    requestOptions().then(function (pk) {
      if (pk === null) { return; }
      box.hidden = false;
      autofill(pk);
    }).catch(function () { /* the button stays hidden: the password form is there */ });

    box.querySelector("button").addEventListener("click", function () {
      say(box, "");
      if (conditional) { conditional.abort(); conditional = null; }
      requestOptions().then(function (pk) {
        return navigator.credentials.get({ publicKey: pk });
      }).then(signed).catch(function (e) { failed(box, e); });
    });
  }

  function add(form) {
    var name = form.querySelector('input[name="passkey-name"]');
    form.hidden = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      say(form, "");
      post(form.dataset.options).then(function (answer) {
        if (!answer.available) { return follow(answer); }
        var pk = answer.options.publicKey;
        pk.challenge = bytes(pk.challenge);
        pk.user.id = bytes(pk.user.id);
        ids(pk.excludeCredentials);
        return navigator.credentials.create({ publicKey: pk }).then(function (credential) {
          var r = credential.response;
          return post(form.dataset.finish, {
            name: name ? name.value : "",
            credential: {
              id: credential.id,
              rawId: text(credential.rawId),
              type: credential.type,
              response: {
                attestationObject: text(r.attestationObject),
                clientDataJSON: text(r.clientDataJSON)
              },
              extensions: {}
            }
          }).then(follow);
        });
      }).catch(function (e) { failed(form, e); });
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll(".flaskbbd-passkey-signin"), signIn);
  Array.prototype.forEach.call(document.querySelectorAll(".flaskbbd-passkey-add"), add);
})();
