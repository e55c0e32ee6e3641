/* flaskbb-flaskbbd: passkeys (WebAuthn) on the forum's pages, served by the bridge.
 *
 * Sign-in (.flaskbbd-passkey-signin: the login page, reauthentication, the code step):
 * asks the bridge for the options of a sign-in (on the login page at once, for the
 * login field's autofill, with mediation "conditional", where the browser has it;
 * elsewhere when the button is pressed), lets the browser sign them
 * (navigator.credentials.get), and posts the answer back; the bridge signs the
 * member in and answers where to go (the page there shows FlaskBB's message on a
 * refusal).
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
    var options = box.dataset.options, finish = box.dataset.finish + window.location.search;
    // The autofill's request, while it waits: the button takes over its options
    // (one ceremony per page, as the daemon allows an address only so many).
    var autofill = null;

    function requestOptions() {
      return post(options).then(function (answer) {
        if (!answer.available) { return answer; }
        var pk = answer.options.publicKey;
        pk.challenge = bytes(pk.challenge);
        ids(pk.allowCredentials);
        return { available: true, publicKey: pk };
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

    function offerAutofill() {
      requestOptions().then(function (begun) {
        if (!begun.available) {
          // Passkeys off: nothing to offer. Too many begun here: the button says so.
          box.hidden = !begun.message;
          return;
        }
        var abort = new AbortController();
        autofill = { publicKey: begun.publicKey, abort: abort, done: null };
        autofill.done = navigator.credentials.get({
          publicKey: begun.publicKey, mediation: "conditional", signal: abort.signal
        }).then(signed, function (e) {
          // Given up for the button, or not taken: nothing to say.
          if (e && e.name !== "AbortError" && e.name !== "NotAllowedError") { failed(box, e); }
        });
      }).catch(function () { /* the button is there, and the password form */ });
    }

    box.hidden = false;
    if (box.dataset.conditional && PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then(function (yes) {
        if (yes) { offerAutofill(); }
      });
    }

    box.querySelector("button").addEventListener("click", function () {
      say(box, "");
      var waiting = autofill;
      autofill = null;
      var begun;
      if (waiting) {
        waiting.abort.abort();
        begun = waiting.done.then(function () { return { available: true, publicKey: waiting.publicKey }; });
      } else {
        begun = requestOptions();
      }
      begun.then(function (b) {
        if (!b.available) { say(box, b.message || box.dataset.off); return null; }
        return navigator.credentials.get({ publicKey: b.publicKey }).then(signed);
      }).catch(function (e) { failed(box, e); });
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
