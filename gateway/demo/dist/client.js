// gateway/client/clock.ts
var systemClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle)
};
var ManualClock = class {
  #now;
  #next = 1;
  #timers = /* @__PURE__ */ new Map();
  constructor(start = 17e11) {
    this.#now = start;
  }
  now() {
    return this.#now;
  }
  setTimeout(fn, ms) {
    const id = this.#next++;
    this.#timers.set(id, {
      at: this.#now + Math.max(0, ms),
      fn
    });
    return id;
  }
  clearTimeout(handle) {
    this.#timers.delete(handle);
  }
  /** Pending timers. */
  get pending() {
    return this.#timers.size;
  }
  /** Due time of the earliest timer, if any. */
  get nextAt() {
    let min;
    for (const t of this.#timers.values()) if (min === void 0 || t.at < min) min = t.at;
    return min;
  }
  /** Move time forward by `ms`, firing due timers in order. */
  advance(ms) {
    const target = this.#now + ms;
    for (; ; ) {
      let due;
      for (const entry of this.#timers) {
        if (entry[1].at <= target && (due === void 0 || entry[1].at < due[1].at)) due = entry;
      }
      if (due === void 0) break;
      this.#timers.delete(due[0]);
      this.#now = Math.max(this.#now, due[1].at);
      due[1].fn();
    }
    this.#now = target;
  }
};

// gateway/client/auth.ts
var ApiError = class extends Error {
  name = "ApiError";
  /** HTTP status of the failed call (0 for network errors). */
  status;
  constructor(message, status, options) {
    super(message, options);
    this.status = status;
  }
};
var RestAuth = class {
  #base;
  #fetch;
  #clock;
  #marginMs;
  #access;
  #refreshToken;
  #refreshing;
  #obtainedAt = 0;
  #user;
  #sessionId;
  /** `baseUrl` is the gateway origin, e.g. `http://localhost:8080` or `location.origin`. */
  constructor(baseUrl, options = {}) {
    this.#base = baseUrl.replace(/\/+$/, "");
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.#clock = options.clock ?? systemClock;
    this.#marginMs = options.marginMs ?? 3e4;
  }
  /** The signed-in user, after login. */
  get user() {
    return this.#user;
  }
  /** The session id (the server de-duplicates resent ops per session). */
  get sessionId() {
    return this.#sessionId;
  }
  /** The gateway origin. */
  get baseUrl() {
    return this.#base;
  }
  /**
   * Sign in with a username and password.
   * @throws {ApiError} for wrong credentials or an unreachable gateway
   */
  async login(username, password) {
    const data = await this.#post("/api/v1/auth/login", {
      username,
      password
    });
    this.#take(data);
    return data.user;
  }
  /** @throws {ApiError} when not signed in or the refresh token is rejected */
  async getToken() {
    const access = this.#access;
    const lifetime = access === void 0 ? 0 : access.expiresAt - this.#obtainedAt;
    const margin = Math.min(this.#marginMs, lifetime / 3);
    if (access !== void 0 && access.expiresAt - this.#clock.now() > margin) {
      return access;
    }
    return await this.refresh();
  }
  /** @throws {ApiError} when not signed in or the refresh token is rejected */
  refresh() {
    this.#refreshing ??= (async () => {
      try {
        const refreshToken = this.#refreshToken;
        if (refreshToken === void 0) throw new ApiError("Not signed in", 401);
        const data = await this.#post("/api/v1/auth/refresh", {
          refresh_token: refreshToken
        });
        return this.#take(data);
      } finally {
        this.#refreshing = void 0;
      }
    })();
    return this.#refreshing;
  }
  /** An authenticated REST call; returns the envelope's `data`. */
  async request(method, path, body) {
    const { token } = await this.getToken();
    return await this.#call(method, path, body, token);
  }
  /** Sign out (revokes the session on the server; best effort). */
  async logout() {
    try {
      if (this.#access !== void 0) {
        await this.#call("POST", "/api/v1/auth/logout", {}, this.#access.token);
      }
    } finally {
      this.#access = void 0;
      this.#refreshToken = void 0;
      this.#user = void 0;
    }
  }
  #take(data) {
    this.#access = {
      token: data.access_token,
      expiresAt: data.expires_at
    };
    this.#obtainedAt = this.#clock.now();
    this.#refreshToken = data.refresh_token;
    this.#user = data.user;
    this.#sessionId = data.session_id;
    return this.#access;
  }
  #post(path, body) {
    return this.#call("POST", path, body, void 0);
  }
  async #call(method, path, body, token) {
    const headers = {};
    if (body !== void 0) headers["content-type"] = "application/json";
    if (token !== void 0) headers.authorization = `Bearer ${token}`;
    let response;
    try {
      response = await this.#fetch(this.#base + path, {
        method,
        headers,
        body: body === void 0 ? void 0 : JSON.stringify(body)
      });
    } catch (error) {
      throw new ApiError(`Cannot reach ${this.#base}: ${String(error)}`, 0, {
        cause: error
      });
    }
    const envelope = await response.json().catch(() => null);
    if (!response.ok) {
      const message = envelope?.message ?? `HTTP ${response.status}`;
      throw new ApiError(message, response.status);
    }
    return envelope?.data;
  }
};

// gateway/client/backoff.ts
var DEFAULT_BACKOFF = {
  baseMs: 250,
  maxMs: 1e4
};
function backoffDelay(attempt, options) {
  if (!Number.isInteger(attempt) || attempt < 0) {
    throw new RangeError(`Invalid attempt: expected an integer >= 0, got ${attempt}`);
  }
  if (!(options.baseMs > 0) || !(options.maxMs >= options.baseMs)) {
    throw new RangeError("Invalid backoff bounds: expected 0 < baseMs <= maxMs");
  }
  const ceiling = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(attempt, 52));
  const random = (options.random ?? Math.random)();
  return Math.floor(ceiling * Math.min(Math.max(random, 0), 0.999999));
}

// gateway/client/emitter.ts
var Emitter = class {
  #listeners = /* @__PURE__ */ new Map();
  /** Listen to `type`; returns a function that removes the listener. */
  on(type, listener) {
    let set = this.#listeners.get(type);
    if (set === void 0) {
      set = /* @__PURE__ */ new Set();
      this.#listeners.set(type, set);
    }
    set.add(listener);
    return () => this.off(type, listener);
  }
  /** Listen to the next `type` event only. */
  once(type, listener) {
    const off = this.on(type, (payload) => {
      off();
      listener(payload);
    });
    return off;
  }
  /** Resolve with the next `type` event for which `match` holds. */
  next(type, match = () => true) {
    return new Promise((resolve) => {
      const off = this.on(type, (payload) => {
        if (!match(payload)) return;
        off();
        resolve(payload);
      });
    });
  }
  /** Remove a listener. */
  off(type, listener) {
    this.#listeners.get(type)?.delete(listener);
  }
  /**
   * Call every listener of `type`. A throwing listener does not stop the others; its error
   * is reported asynchronously (like EventTarget does).
   */
  emit(type, payload) {
    for (const listener of [
      ...this.#listeners.get(type) ?? []
    ]) {
      try {
        listener(payload);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
};

// gateway/client/_link.ts
var RequestError = class extends Error {
  name = "RequestError";
  /** gRPC-style status name ("UNAVAILABLE", "PERMISSION_DENIED", ...) or "DISCONNECTED". */
  status;
  constructor(status, message) {
    super(message);
    this.status = status;
  }
};
var TRANSIENT = /* @__PURE__ */ new Set([
  "DISCONNECTED",
  "TIMEOUT",
  "UNAVAILABLE",
  "DEADLINE_EXCEEDED",
  "RESOURCE_EXHAUSTED",
  "ABORTED",
  "INTERNAL"
]);

// statesync/json0/op_error.ts
var OpError = class extends Error {
  name = "OpError";
  /** The gRPC status name callers should answer with. */
  status;
  /** The path of the offending component (`[]` when unknown or the root). */
  path;
  /** Index of the offending component in its op, when known. */
  component;
  /**
   * @param status INVALID_ARGUMENT for malformed ops, FAILED_PRECONDITION for ops that do not fit
   * @param message what went wrong, in sentence case
   * @param path the offending component's path
   * @param options `component`: its index in the op; `cause`: the underlying error
   */
  constructor(status, message, path = [], options = {}) {
    super(message, options.cause === void 0 ? void 0 : {
      cause: options.cause
    });
    this.status = status;
    this.path = path;
    this.component = options.component;
  }
};

// statesync/json0/_json.ts
function kindOf(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "list";
  if (typeof value === "object") return "object";
  if (typeof value === "string") return "string";
  if (typeof value === "number") return "number";
  if (typeof value === "boolean") return "boolean";
  return typeof value;
}
function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
function setKey(target, key, value) {
  if (key === "__proto__") {
    Object.defineProperty(target, key, {
      value,
      writable: true,
      enumerable: true,
      configurable: true
    });
  } else {
    target[key] = value;
  }
}
function jsonEquals(a, b) {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEquals(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const key of keys) {
    if (!Object.hasOwn(b, key) || !jsonEquals(a[key], b[key])) return false;
  }
  return true;
}
function formatPath(path) {
  if (path.length === 0) return "/";
  return path.map((segment) => "/" + String(segment)).join("");
}
function pathEquals(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
function isPrefix(prefix, path) {
  if (prefix.length > path.length) return false;
  for (let i = 0; i < prefix.length; i++) if (prefix[i] !== path[i]) return false;
  return true;
}

// statesync/json0/_validate.ts
var DEFAULT_OP_LIMITS = Object.freeze({
  maxComponents: 1e3,
  maxPathLength: 64,
  maxDepth: 64
});
var ACTION_TYPES = /* @__PURE__ */ new Set([
  "set",
  "delete",
  "text_insert",
  "text_delete",
  "list_insert",
  "list_delete",
  "list_move",
  "increment"
]);
function invalid(message, path, component) {
  return new OpError("INVALID_ARGUMENT", message, path, {
    component
  });
}
function readPath(raw, field, limits, component) {
  if (!Array.isArray(raw)) throw invalid(`${field} must be a list`, [], component);
  if (raw.length > limits.maxPathLength) {
    throw invalid(`${field} is too long: ${raw.length} segments, limit ${limits.maxPathLength}`, [], component);
  }
  for (let i = 0; i < raw.length; i++) {
    const segment = raw[i];
    if (typeof segment === "string") continue;
    if (typeof segment === "number" && Number.isSafeInteger(segment) && segment >= 0) continue;
    throw invalid(`${field}[${i}] must be an object key (string) or a list index (non-negative integer)`, [], component);
  }
  return raw;
}
function readIndex(raw, field, path, component) {
  if (typeof raw !== "number" || !Number.isSafeInteger(raw) || raw < 0) {
    throw invalid(`${field} must be a non-negative integer`, path, component);
  }
  return raw;
}
function readJson(raw, field, depth, limits, copy, path, component) {
  switch (typeof raw) {
    case "string":
    case "boolean":
      return raw;
    case "number":
      if (!Number.isFinite(raw)) throw invalid(`${field} must be a finite number`, path, component);
      return raw;
    case "object": {
      if (raw === null) return null;
      if (depth >= limits.maxDepth) {
        throw invalid(`${field} is nested too deeply (limit ${limits.maxDepth})`, path, component);
      }
      if (Array.isArray(raw)) {
        const out2 = copy ? new Array(raw.length) : raw;
        for (let i = 0; i < raw.length; i++) {
          const item = readJson(raw[i], `${field}[${i}]`, depth + 1, limits, copy, path, component);
          if (copy) out2[i] = item;
        }
        return out2;
      }
      const proto = Object.getPrototypeOf(raw);
      if (proto !== Object.prototype && proto !== null) {
        throw invalid(`${field} must be a plain JSON object`, path, component);
      }
      const source = raw;
      const out = copy ? {} : source;
      for (const key of Object.keys(source)) {
        const item = readJson(source[key], `${field}.${key}`, depth + 1, limits, copy, path, component);
        if (copy) setKey(out, key, item);
      }
      return out;
    }
    default:
      throw invalid(`${field} must be a JSON value, not ${typeof raw}`, path, component);
  }
}
function readComponent(raw, index, limits, copy) {
  const field = `op[${index}]`;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw invalid(`${field} must be an object with path and action`, [], index);
  }
  const source = raw;
  const path = readPath(source.path, `${field}.path`, limits, index);
  const rawAction = source.action;
  if (typeof rawAction !== "object" || rawAction === null || Array.isArray(rawAction)) {
    throw invalid(`${field}.action must be an object`, path, index);
  }
  const a = rawAction;
  const type = a.type;
  if (typeof type !== "string" || !ACTION_TYPES.has(type)) {
    throw invalid(`${field}.action.type must be one of ${[
      ...ACTION_TYPES
    ].join(", ")}`, path, index);
  }
  const f = `${field}.action`;
  let action;
  switch (type) {
    case "set":
      if (!("value" in a)) throw invalid(`${f}.value is required`, path, index);
      action = {
        type,
        value: readJson(a.value, `${f}.value`, 0, limits, copy, path, index)
      };
      break;
    case "delete":
      if (path.length === 0) throw invalid("Cannot delete the document root", path, index);
      action = {
        type
      };
      break;
    case "text_insert": {
      const offset = readIndex(a.offset, `${f}.offset`, path, index);
      if (typeof a.text !== "string" || a.text.length === 0) {
        throw invalid(`${f}.text must be a non-empty string`, path, index);
      }
      action = {
        type,
        offset,
        text: a.text
      };
      break;
    }
    case "text_delete": {
      const offset = readIndex(a.offset, `${f}.offset`, path, index);
      const length = readIndex(a.length, `${f}.length`, path, index);
      if (length === 0) throw invalid(`${f}.length must be positive`, path, index);
      action = {
        type,
        offset,
        length
      };
      break;
    }
    case "list_insert": {
      const at2 = readIndex(a.index, `${f}.index`, path, index);
      if (!("value" in a)) throw invalid(`${f}.value is required`, path, index);
      action = {
        type,
        index: at2,
        value: readJson(a.value, `${f}.value`, 0, limits, copy, path, index)
      };
      break;
    }
    case "list_delete":
      action = {
        type,
        index: readIndex(a.index, `${f}.index`, path, index)
      };
      break;
    case "list_move":
      action = {
        type,
        from: readIndex(a.from, `${f}.from`, path, index),
        to: readIndex(a.to, `${f}.to`, path, index)
      };
      break;
    default: {
      if (typeof a.delta !== "number" || !Number.isFinite(a.delta)) {
        throw invalid(`${f}.delta must be a finite number`, path, index);
      }
      action = {
        type: "increment",
        delta: a.delta
      };
    }
  }
  if (!copy) return raw;
  return {
    path: [
      ...path
    ],
    action
  };
}

// statesync/json0/apply.ts
var APPLY_LIMITS = {
  maxComponents: Number.POSITIVE_INFINITY,
  maxPathLength: Number.POSITIVE_INFINITY,
  maxDepth: 1e3
};
var Editor = class {
  #owned;
  component;
  index;
  constructor(component, index, owned) {
    this.component = component;
    this.index = index;
    this.#owned = owned;
  }
  fail(message) {
    throw new OpError("FAILED_PRECONDITION", `${message} (op[${this.index}] ${this.component.action.type} at ${formatPath(this.component.path)})`, this.component.path, {
      component: this.index
    });
  }
  ownList(list) {
    if (this.#owned.has(list)) return list;
    const copy = list.slice();
    this.#owned.add(copy);
    return copy;
  }
  ownObject(object) {
    if (this.#owned.has(object)) return object;
    const copy = {
      ...object
    };
    this.#owned.add(copy);
    return copy;
  }
  /** Replace the node at `path[depth..]` below `node` by `edit(target)`; copies on the way. */
  editAt(node, depth, end, edit) {
    if (depth === end) return edit(node);
    const path = this.component.path;
    const segment = path[depth];
    const where = formatPath(path.slice(0, depth));
    if (typeof segment === "number") {
      if (!Array.isArray(node)) {
        this.fail(`Path not found: index ${segment} needs a list at ${where}, found ${kindOf(node)}`);
      }
      if (segment >= node.length) {
        this.fail(`Path not found: index ${segment} is out of range for the list at ${where} (length ${node.length})`);
      }
      const child2 = this.editAt(node[segment], depth + 1, end, edit);
      const list = this.ownList(node);
      list[segment] = child2;
      return list;
    }
    if (!isObject(node)) {
      this.fail(`Path not found: key "${segment}" needs an object at ${where}, found ${kindOf(node)}`);
    }
    if (!Object.hasOwn(node, segment)) {
      this.fail(`Path not found: no key "${segment}" in the object at ${where}`);
    }
    const child = this.editAt(node[segment], depth + 1, end, edit);
    const object = this.ownObject(node);
    setKey(object, segment, child);
    return object;
  }
};
function checkIndex(editor, index, length, what) {
  if (index > length) {
    editor.fail(`${what} ${index} is out of range for a list of length ${length}`);
  }
}
function applyComponent(root, c, editor) {
  const path = c.path;
  const action = c.action;
  const last = path.length - 1;
  switch (action.type) {
    case "set":
      if (path.length === 0) return action.value;
      return editor.editAt(root, 0, last, (parent) => {
        const key = path[last];
        if (typeof key === "number") {
          if (!Array.isArray(parent)) {
            editor.fail(`Type mismatch: index ${key} needs a list, found ${kindOf(parent)}`);
          }
          if (key >= parent.length) {
            editor.fail(`Index ${key} is out of range for a list of length ${parent.length} (use list_insert to add)`);
          }
          const list = editor.ownList(parent);
          list[key] = action.value;
          return list;
        }
        if (!isObject(parent)) {
          editor.fail(`Type mismatch: key "${key}" needs an object, found ${kindOf(parent)}`);
        }
        const object = editor.ownObject(parent);
        setKey(object, key, action.value);
        return object;
      });
    case "delete":
      return editor.editAt(root, 0, last, (parent) => {
        const key = path[last];
        if (typeof key === "number") {
          if (!Array.isArray(parent)) {
            editor.fail(`Type mismatch: index ${key} needs a list, found ${kindOf(parent)}`);
          }
          if (key >= parent.length) {
            editor.fail(`Index ${key} is out of range for a list of length ${parent.length}`);
          }
          const list = editor.ownList(parent);
          list.splice(key, 1);
          return list;
        }
        if (!isObject(parent)) {
          editor.fail(`Type mismatch: key "${key}" needs an object, found ${kindOf(parent)}`);
        }
        if (!Object.hasOwn(parent, key)) editor.fail(`Path not found: no key "${key}" to delete`);
        const object = editor.ownObject(parent);
        delete object[key];
        return object;
      });
    case "text_insert":
    case "text_delete":
      return editor.editAt(root, 0, path.length, (target) => {
        if (typeof target !== "string") {
          editor.fail(`Type mismatch: text edit needs a string, found ${kindOf(target)}`);
        }
        if (action.type === "text_insert") {
          if (action.offset > target.length) {
            editor.fail(`Offset ${action.offset} is out of range for a string of length ${target.length}`);
          }
          return target.slice(0, action.offset) + action.text + target.slice(action.offset);
        }
        if (action.offset + action.length > target.length) {
          editor.fail(`Range ${action.offset}..${action.offset + action.length} is out of range for a string of length ${target.length}`);
        }
        return target.slice(0, action.offset) + target.slice(action.offset + action.length);
      });
    case "list_insert":
    case "list_delete":
    case "list_move":
      return editor.editAt(root, 0, path.length, (target) => {
        if (!Array.isArray(target)) {
          editor.fail(`Type mismatch: ${action.type} needs a list, found ${kindOf(target)}`);
        }
        if (action.type === "list_insert") {
          checkIndex(editor, action.index, target.length, "Index");
          const list2 = editor.ownList(target);
          list2.splice(action.index, 0, action.value);
          return list2;
        }
        if (action.type === "list_delete") {
          checkIndex(editor, action.index + 1, target.length, "Index");
          const list2 = editor.ownList(target);
          list2.splice(action.index, 1);
          return list2;
        }
        if (action.from >= target.length || action.to >= target.length) {
          editor.fail(`Move ${action.from} -> ${action.to} is out of range for a list of length ${target.length}`);
        }
        if (action.from === action.to) return target;
        const list = editor.ownList(target);
        const [moved] = list.splice(action.from, 1);
        list.splice(action.to, 0, moved);
        return list;
      });
    case "increment":
      return editor.editAt(root, 0, path.length, (target) => {
        if (typeof target !== "number") {
          editor.fail(`Type mismatch: increment needs a number, found ${kindOf(target)}`);
        }
        const result = target + action.delta;
        if (!Number.isFinite(result)) editor.fail(`Increment overflows the number ${target}`);
        return result;
      });
  }
}
function apply(doc, op) {
  if (!Array.isArray(op)) throw new OpError("INVALID_ARGUMENT", "op must be a list of components");
  const owned = /* @__PURE__ */ new Set();
  let root = doc;
  for (let i = 0; i < op.length; i++) {
    const component = readComponent(op[i], i, APPLY_LIMITS, false);
    root = applyComponent(root, component, new Editor(component, i, owned));
  }
  return root;
}

// statesync/json0/transform.ts
function isNodeLevel(action) {
  return action.type === "set" || action.type === "delete" || action.type === "list_delete";
}
function nodeOf(c) {
  return c.action.type === "list_delete" ? [
    ...c.path,
    c.action.index
  ] : c.path;
}
function structuralList(c) {
  switch (c.action.type) {
    case "list_insert":
    case "list_delete":
    case "list_move":
      return c.path;
    case "delete":
      return typeof c.path[c.path.length - 1] === "number" ? c.path.slice(0, -1) : void 0;
    default:
      return void 0;
  }
}
function mapIndex(j, a) {
  const action = a.action;
  switch (action.type) {
    case "list_insert":
      return j >= action.index ? j + 1 : j;
    case "list_move": {
      if (j === action.from) return action.to;
      const without = j > action.from ? j - 1 : j;
      return without >= action.to ? without + 1 : without;
    }
    case "list_delete":
    case "delete": {
      const i = action.type === "list_delete" ? action.index : a.path[a.path.length - 1];
      if (j === i) return void 0;
      return j > i ? j - 1 : j;
    }
    default:
      return j;
  }
}
function withPath(c, path) {
  return {
    path,
    action: c.action
  };
}
function at(c, action) {
  return {
    path: c.path,
    action
  };
}
function move(c, from, to) {
  return from === to ? [] : [
    at(c, {
      type: "list_move",
      from,
      to
    })
  ];
}
function transformListAction(c, a, cLeft) {
  const ca = c.action;
  const aa = a.action;
  switch (ca.type) {
    case "list_insert": {
      let index = ca.index;
      if (aa.type === "list_insert") {
        if (index > aa.index || index === aa.index && !cLeft) index++;
      } else if (aa.type === "list_move") {
        const gap = index <= aa.from ? index : index - 1;
        index = gap < aa.to || gap === aa.to && cLeft ? gap : gap + 1;
      } else {
        const removed = mapRemoved(a);
        if (index > removed) index--;
      }
      return [
        at(c, {
          ...ca,
          index
        })
      ];
    }
    case "list_delete": {
      const index = mapIndex(ca.index, a);
      return index === void 0 ? [] : [
        at(c, {
          type: "list_delete",
          index
        })
      ];
    }
    case "list_move": {
      const { from, to } = ca;
      if (aa.type === "list_insert") {
        const gap = aa.index <= from ? aa.index : aa.index - 1;
        const newTo = to < gap || to === gap && cLeft ? to : to + 1;
        return move(c, from >= aa.index ? from + 1 : from, newTo);
      }
      if (aa.type === "list_move") {
        if (aa.from === from) return cLeft ? move(c, aa.to, to) : [];
        const x = from > aa.from ? from - 1 : from;
        const w = aa.from > from ? aa.from - 1 : aa.from;
        const gapX = to <= w ? to : to - 1;
        const gapW = aa.to <= x ? aa.to : aa.to - 1;
        const newTo = gapX < gapW || gapX === gapW && cLeft ? gapX : gapX + 1;
        return move(c, mapIndex(from, a), newTo);
      }
      const removed = mapRemoved(a);
      if (removed === from) return [];
      const z = removed > from ? removed - 1 : removed;
      return move(c, mapIndex(from, a), to <= z ? to : to - 1);
    }
    default:
      return [
        c
      ];
  }
}
function mapRemoved(a) {
  return a.action.type === "list_delete" ? a.action.index : a.path[a.path.length - 1];
}
function transformText(c, a, cLeft) {
  const ca = c.action;
  const aa = a.action;
  if (ca.type === "text_insert") {
    let offset = ca.offset;
    if (aa.type === "text_insert") {
      if (offset > aa.offset || offset === aa.offset && !cLeft) offset += aa.text.length;
    } else if (aa.type === "text_delete") {
      if (offset >= aa.offset + aa.length) offset -= aa.length;
      else if (offset > aa.offset) offset = aa.offset;
    }
    return [
      at(c, {
        ...ca,
        offset
      })
    ];
  }
  if (ca.type === "text_delete") {
    const start = ca.offset;
    const end = ca.offset + ca.length;
    if (aa.type === "text_insert") {
      const size = aa.text.length;
      if (aa.offset <= start) return [
        at(c, {
          ...ca,
          offset: start + size
        })
      ];
      if (aa.offset >= end) return [
        c
      ];
      const head = aa.offset - start;
      return [
        at(c, {
          type: "text_delete",
          offset: start,
          length: head
        }),
        at(c, {
          type: "text_delete",
          offset: start + size,
          length: ca.length - head
        })
      ];
    }
    if (aa.type === "text_delete") {
      const aEnd = aa.offset + aa.length;
      const overlap = Math.max(0, Math.min(end, aEnd) - Math.max(start, aa.offset));
      const length = ca.length - overlap;
      if (length === 0) return [];
      const offset = start <= aa.offset ? start : start >= aEnd ? start - aa.length : aa.offset;
      return [
        at(c, {
          type: "text_delete",
          offset,
          length
        })
      ];
    }
  }
  return [
    c
  ];
}
function transformComponent(c, a, cLeft, collect) {
  const ca = c.action;
  const aa = a.action;
  if (isNodeLevel(aa)) {
    const removedNode = nodeOf(a);
    if (isNodeLevel(ca)) {
      const node = nodeOf(c);
      if (pathEquals(node, removedNode)) {
        if (collect !== void 0 && (ca.type === "set" || aa.type === "set")) {
          const incoming = ca.type === "set" ? ca.value : void 0;
          const applied = aa.type === "set" ? aa.value : void 0;
          if (!(incoming !== void 0 && applied !== void 0 && jsonEquals(incoming, applied))) {
            collect(c, a, node);
          }
        }
        if (ca.type === "set") {
          if (!cLeft) return [];
          const key = node[node.length - 1];
          if (aa.type !== "set" && typeof key === "number") {
            return [
              {
                path: node.slice(0, -1),
                action: {
                  type: "list_insert",
                  index: key,
                  value: ca.value
                }
              }
            ];
          }
          return [
            c
          ];
        }
        return aa.type === "set" && cLeft ? [
          c
        ] : [];
      }
      if (node.length > removedNode.length && isPrefix(removedNode, node)) return [];
    } else if (isPrefix(removedNode, c.path)) {
      return [];
    }
  }
  const list = structuralList(a);
  if (list !== void 0) {
    if (c.path.length > list.length && isPrefix(list, c.path)) {
      const j = c.path[list.length];
      if (typeof j !== "number") return [
        c
      ];
      const index = mapIndex(j, a);
      if (index === void 0) return [];
      if (index === j) return [
        c
      ];
      const path = c.path.slice();
      path[list.length] = index;
      return [
        withPath(c, path)
      ];
    }
    if (pathEquals(c.path, list)) return transformListAction(c, a, cLeft);
    return [
      c
    ];
  }
  if ((aa.type === "text_insert" || aa.type === "text_delete") && (ca.type === "text_insert" || ca.type === "text_delete") && pathEquals(c.path, a.path)) {
    return transformText(c, a, cLeft);
  }
  return [
    c
  ];
}
function pair(first, second, ctx) {
  const collect = ctx.collect === void 0 ? void 0 : (incoming, applied, path) => ctx.collect({
    path,
    appliedValue: valueOf(applied.action),
    incomingValue: valueOf(incoming.action)
  });
  return [
    transformComponent(first, second, ctx.firstLeft, collect),
    transformComponent(second, first, !ctx.firstLeft, void 0)
  ];
}
function againstComponent(first, second, ctx) {
  let rest = [
    second
  ];
  const out = [];
  for (const c of first) {
    let rebased;
    if (rest.length === 1) [rebased, rest] = pair(c, rest[0], ctx);
    else [rebased, rest] = componentAgainst(c, rest, ctx);
    for (const r of rebased) out.push(r);
  }
  return [
    out,
    rest
  ];
}
function componentAgainst(first, second, ctx) {
  let current = [
    first
  ];
  const out = [];
  for (const s of second) {
    if (current.length === 0) {
      out.push(s);
      continue;
    }
    let rebased;
    [current, rebased] = againstComponent(current, s, ctx);
    for (const r of rebased) out.push(r);
  }
  return [
    current,
    out
  ];
}
function transformX(first, second, ctx) {
  if (first.length === 1 && second.length === 1) return pair(first[0], second[0], ctx);
  let rest = second;
  const out = [];
  for (const c of first) {
    let rebased;
    [rebased, rest] = componentAgainst(c, rest, ctx);
    for (const r of rebased) out.push(r);
  }
  return [
    out,
    rest
  ];
}
function valueOf(action) {
  return action.type === "set" ? action.value : void 0;
}
function checkOps(op, other) {
  if (!Array.isArray(op) || !Array.isArray(other)) {
    throw new TypeError("Cannot transform: ops must be lists of components");
  }
}
function transform(op, against, side) {
  if (side !== "left" && side !== "right") {
    throw new TypeError(`Cannot transform: side must be "left" or "right", got ${String(side)}`);
  }
  checkOps(op, against);
  return transformX(op, against, {
    firstLeft: side === "left"
  })[0];
}

// gateway/client/ot_state.ts
var OtState = class {
  #version;
  #content;
  #inflight = null;
  #pending = [];
  #mineWins;
  #maxComponents;
  #maxBytes;
  #newId;
  constructor(options) {
    this.#version = options.version;
    this.#content = options.content;
    this.#mineWins = options.strategy === "lww";
    this.#maxComponents = options.maxComponents ?? 500;
    this.#maxBytes = options.maxBytes ?? 32768;
    this.#newId = options.newId ?? (() => crypto.randomUUID());
  }
  /** Last server version incorporated. */
  get version() {
    return this.#version;
  }
  /** The local view: server state plus our unacknowledged ops. */
  get content() {
    return this.#content;
  }
  /** The op awaiting its ack, if any. */
  get inflight() {
    return this.#inflight;
  }
  /** Local components not yet sent. */
  get pending() {
    return this.#pending;
  }
  /** Our not yet acknowledged edits, in order (in flight, then pending), in local coordinates. */
  get unacknowledgedOp() {
    return [
      ...this.#inflight?.op ?? [],
      ...this.#pending
    ];
  }
  /** Components not yet acknowledged (in flight + pending). */
  get unacknowledged() {
    return (this.#inflight?.op.length ?? 0) + this.#pending.length;
  }
  /**
   * Apply a local op optimistically and queue it.
   * @throws {OpError} when the op does not apply to the local content (state unchanged)
   */
  submit(op) {
    if (op.length === 0) return;
    this.#content = apply(this.#content, op);
    for (const component of op) appendCompressed(this.#pending, component);
  }
  /**
   * If nothing is in flight and something is pending: move the head of the pending op (at
   * most maxComponents components and about maxBytes) into flight, against the current
   * version, and return it for sending.
   */
  takeSendable() {
    if (this.#inflight !== null || this.#pending.length === 0) return null;
    const op = [];
    let bytes = 0;
    let index = 0;
    const rest = [];
    for (; index < this.#pending.length && op.length < this.#maxComponents; index++) {
      const component = this.#pending[index];
      const size = byteSize(component);
      if (bytes + size <= this.#maxBytes || op.length === 0 && size <= this.#maxBytes) {
        op.push(component);
        bytes += size;
        continue;
      }
      const [head, tail] = splitInsert(component, this.#maxBytes - bytes);
      if (head !== void 0) op.push(head);
      if (tail !== void 0) rest.push(tail);
      if (head === void 0 && op.length === 0) {
        op.push(component);
        rest.pop();
      }
      index++;
      break;
    }
    this.#pending = [
      ...rest,
      ...this.#pending.slice(index)
    ];
    this.#inflight = {
      op,
      clientOpId: this.#newId(),
      baseVersion: this.#version
    };
    return this.#inflight;
  }
  /**
   * The in-flight op to send again after a reconnect (same client op id, so the server
   * de-duplicates it), rebased on the current version.
   */
  resendable() {
    if (this.#inflight === null) return null;
    this.#inflight.baseVersion = this.#version;
    return this.#inflight;
  }
  /**
   * Incorporate an operation the server applied at `version`, in server order.
   * `clientOpId` identifies our own in-flight op coming back.
   * @throws {OpError} if the transformed op does not apply (a bug or a corrupt stream)
   */
  receive(version, op, clientOpId) {
    if (version <= this.#version) return {
      kind: "stale"
    };
    if (version > this.#version + 1) return {
      kind: "gap"
    };
    if (this.#inflight !== null && clientOpId !== void 0 && clientOpId !== "" && clientOpId === this.#inflight.clientOpId) {
      this.#version = version;
      this.#inflight = null;
      return {
        kind: "ack",
        version
      };
    }
    let remote = op;
    if (this.#inflight !== null) {
      const mine = this.#inflight.op;
      this.#inflight.op = this.#transformMine(mine, remote);
      remote = this.#transformTheirs(remote, mine);
    }
    if (this.#pending.length > 0) {
      const mine = this.#pending;
      this.#pending = this.#transformMine(mine, remote);
      remote = this.#transformTheirs(remote, mine);
    }
    this.#content = apply(this.#content, remote);
    this.#version = version;
    return {
      kind: "remote",
      version,
      op: remote
    };
  }
  /**
   * An ack for `clientOpId` at `version`: completes the in-flight op when no other op came
   * between (otherwise the ops before it are still on their way and the op's own
   * operation_applied event completes it). Returns true when the ack was taken.
   */
  ack(version, clientOpId) {
    if (this.#inflight?.clientOpId !== clientOpId || version !== this.#version + 1) return false;
    this.#version = version;
    this.#inflight = null;
    return true;
  }
  /**
   * Start over from a server snapshot (after a rejected op or a resync); returns the local
   * ops that were dropped.
   */
  reset(version, content, strategy) {
    const dropped = [
      ...this.#inflight?.op ?? [],
      ...this.#pending
    ];
    this.#version = version;
    this.#content = content;
    this.#inflight = null;
    this.#pending = [];
    if (strategy !== void 0) this.#mineWins = strategy === "lww";
    return dropped;
  }
  #transformMine(mine, theirs) {
    return transform(mine, theirs, this.#mineWins ? "left" : "right");
  }
  #transformTheirs(theirs, mine) {
    return transform(theirs, mine, this.#mineWins ? "right" : "left");
  }
};
function appendCompressed(op, next) {
  const last = op[op.length - 1];
  if (last !== void 0 && samePath(last.path, next.path)) {
    const a = last.action;
    const b = next.action;
    if (a.type === "text_insert" && b.type === "text_insert") {
      if (b.offset >= a.offset && b.offset <= a.offset + a.text.length) {
        const at2 = b.offset - a.offset;
        const text = a.text.slice(0, at2) + b.text + a.text.slice(at2);
        op[op.length - 1] = {
          path: last.path,
          action: {
            ...a,
            text
          }
        };
        return;
      }
    }
    if (a.type === "text_delete" && b.type === "text_delete") {
      if (b.offset === a.offset) {
        op[op.length - 1] = {
          path: last.path,
          action: {
            ...a,
            length: a.length + b.length
          }
        };
        return;
      }
      if (b.offset + b.length === a.offset) {
        op[op.length - 1] = {
          path: last.path,
          action: {
            type: "text_delete",
            offset: b.offset,
            length: a.length + b.length
          }
        };
        return;
      }
    }
  }
  op.push(next);
}
var encoder = new TextEncoder();
function byteSize(component) {
  return encoder.encode(JSON.stringify(component)).length + 16;
}
function splitInsert(component, budget) {
  const action = component.action;
  const overhead = byteSize({
    ...component,
    action: {
      ...action,
      text: ""
    }
  });
  if (action.type !== "text_insert" || budget - overhead < 64) return [
    void 0,
    component
  ];
  let cut = Math.max(1, Math.floor((budget - overhead) / 6));
  const code = action.text.charCodeAt(cut - 1);
  if (code >= 55296 && code <= 56319) cut--;
  if (cut <= 0 || cut >= action.text.length) return [
    component,
    void 0
  ];
  return [
    {
      path: component.path,
      action: {
        ...action,
        text: action.text.slice(0, cut)
      }
    },
    {
      path: component.path,
      action: {
        ...action,
        offset: action.offset + cut,
        text: action.text.slice(cut)
      }
    }
  ];
}
function samePath(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

// gateway/client/types.ts
function toWireComponents(op) {
  return op.map((c) => ({
    ...c.action,
    path: c.path
  }));
}
function fromWireComponents(components) {
  return components.map((c) => {
    switch (c.type) {
      case "set":
        return {
          path: c.path,
          action: {
            type: "set",
            value: c.value
          }
        };
      case "delete":
        return {
          path: c.path,
          action: {
            type: "delete"
          }
        };
      case "text_insert":
        return {
          path: c.path,
          action: {
            type: "text_insert",
            offset: c.offset,
            text: c.text
          }
        };
      case "text_delete":
        return {
          path: c.path,
          action: {
            type: "text_delete",
            offset: c.offset,
            length: c.length
          }
        };
      case "list_insert":
        return {
          path: c.path,
          action: {
            type: "list_insert",
            index: c.index,
            value: c.value
          }
        };
      case "list_delete":
        return {
          path: c.path,
          action: {
            type: "list_delete",
            index: c.index
          }
        };
      case "list_move":
        return {
          path: c.path,
          action: {
            type: "list_move",
            from: c.from,
            to: c.to
          }
        };
      case "increment":
        return {
          path: c.path,
          action: {
            type: "increment",
            delta: c.delta
          }
        };
      default:
        throw new TypeError(`Unknown component type ${c.type}`);
    }
  });
}

// gateway/client/document.ts
var PRESENCE_TTL_MS = 3e4;
var DocHandle = class {
  /** The document id. */
  id;
  /** Typed events. */
  events = new Emitter();
  #link;
  #ot;
  #info;
  #phase = "idle";
  #buffer = [];
  #presence = /* @__PURE__ */ new Map();
  #locks = /* @__PURE__ */ new Map();
  #myPresence;
  #presenceSent;
  #presenceBusy = false;
  #presenceTimer;
  #retryTimer;
  #retries = 0;
  #loaded;
  #loadedPromise;
  #subscribeSeq = 0;
  /** Subscription (#subscribeSeq) during which the in-flight op was last sent. */
  #inflightEpoch = -1;
  /** @internal created by the client */
  constructor(id, link) {
    this.id = id;
    this.#link = link;
  }
  /** The local view of the content (includes our not yet acknowledged edits). */
  get content() {
    return this.#ot?.content ?? null;
  }
  /** Last server version incorporated. */
  get version() {
    return this.#ot?.version ?? 0;
  }
  /** Document metadata from the last (re)load. */
  get info() {
    return this.#info;
  }
  /** Components not yet acknowledged by the server (in flight + queued). */
  get queued() {
    return this.#ot?.unacknowledged ?? 0;
  }
  /**
   * Our edits the server has not acknowledged yet, in order (for mapping positions that
   * others report in server coordinates into the local view).
   */
  get localOp() {
    return this.#ot?.unacknowledgedOp ?? [];
  }
  /** True while subscribed and caught up. */
  get live() {
    return this.#phase === "live";
  }
  /** Presence of other sessions, by session id. */
  get presence() {
    return this.#presence;
  }
  /** Locks on the document, by lock id. */
  get locks() {
    return this.#locks;
  }
  /**
   * Apply `op` locally now and send it when possible (queued while offline).
   * @throws {OpError} when the op does not apply to the local content
   * @throws {Error} before the document is loaded or after close
   */
  submit(op) {
    if (this.#ot === void 0 || this.#phase === "closed") {
      throw new Error(`Cannot submit: document ${this.id} is not loaded`);
    }
    if (op.length === 0) return;
    this.#ot.submit(op);
    this.events.emit("change", {
      op,
      source: "local",
      version: this.#ot.version
    });
    this.#flush();
  }
  /**
   * Set my presence state (cursor, selection, name...); `null` clears it. Updates are
   * coalesced: one request in flight, the latest state wins.
   */
  setPresence(state) {
    this.#myPresence = state;
    this.#sendPresence();
  }
  /**
   * Acquire a lock on the document (or a path of it); pass `lockId` to renew one.
   * @throws {RequestError} e.g. FAILED_PRECONDITION / ALREADY_EXISTS when someone else holds it
   */
  async lock(options = {}) {
    const reply = await this.#link.request({
      type: "lock",
      document_id: this.id,
      path: options.path ?? [],
      ...options.ttlMs === void 0 ? {} : {
        ttl_ms: options.ttlMs
      },
      ...options.lockId === void 0 ? {} : {
        lock_id: options.lockId
      }
    });
    const lock = reply.data;
    this.#locks.set(lock.id, lock);
    this.events.emit("locks", {
      locks: this.#locks
    });
    return lock;
  }
  /** Release a lock. @throws {RequestError} */
  async unlock(lockId) {
    await this.#link.request({
      type: "unlock",
      document_id: this.id,
      lock_id: lockId
    });
    if (this.#locks.delete(lockId)) this.events.emit("locks", {
      locks: this.#locks
    });
  }
  /** Unsubscribe and stop. */
  async close() {
    if (this.#phase === "closed") return;
    const wasOnline = this.#link.online;
    this.#phase = "closed";
    this.#clearTimers();
    this.#link.forget(this.id);
    this.#loaded?.reject(new Error("Document closed"));
    if (wasOnline) {
      await this.#link.request({
        type: "unsubscribe",
        document_id: this.id
      }).catch(() => {
      });
    }
  }
  // ---- called by the client ----
  /** @internal resolves when first loaded */
  whenLoaded() {
    if (this.#ot !== void 0) return Promise.resolve();
    this.#loadedPromise ??= new Promise((resolve, reject) => {
      this.#loaded = {
        resolve,
        reject
      };
    });
    return this.#loadedPromise;
  }
  /** @internal the socket is authenticated: (re)subscribe */
  onOnline() {
    if (this.#phase === "closed") return;
    this.#subscribe(false);
  }
  /** @internal the socket went down */
  onOffline() {
    if (this.#phase === "closed") return;
    this.#phase = "idle";
    this.#buffer = [];
    this.#presenceBusy = false;
    this.#presenceSent = void 0;
    this.#clearTimers();
  }
  /** @internal a document event from the server */
  onEvent(message) {
    if (this.#phase === "subscribing") {
      this.#buffer.push(message);
      return;
    }
    if (this.#phase !== "live") return;
    this.#handleEvent(message);
  }
  // ---- internals ----
  #subscribe(fresh) {
    this.#phase = "subscribing";
    this.#buffer = [];
    const seq = ++this.#subscribeSeq;
    const resume = !fresh && this.#ot !== void 0;
    const message = {
      type: "subscribe",
      document_id: this.id
    };
    if (resume) message.from_version = this.#ot.version;
    this.#link.request(message).then((reply) => {
      if (seq !== this.#subscribeSeq || this.#phase !== "subscribing") return;
      this.#onSubscribed(reply, resume);
    }, (error) => {
      if (seq !== this.#subscribeSeq || this.#phase === "closed") return;
      if (error.status === "DISCONNECTED") return;
      if (resume && error.status === "OUT_OF_RANGE") {
        this.#subscribe(true);
        return;
      }
      this.events.emit("error", {
        error
      });
      if (TRANSIENT.has(error.status)) {
        const delay = this.#link.retryDelay(this.#retries++);
        this.#link.clearTimeout(this.#retryTimer);
        this.#retryTimer = this.#link.setTimeout(() => {
          this.#retryTimer = void 0;
          if (this.#phase === "subscribing" && seq === this.#subscribeSeq) {
            this.#subscribe(fresh || !resume);
          }
        }, delay);
        return;
      }
      this.#phase = "idle";
      this.#loaded?.reject(error);
      this.#loaded = void 0;
      this.#loadedPromise = void 0;
    });
  }
  #onSubscribed(reply, resumed) {
    const data = reply.data;
    if (data.document !== void 0) {
      const doc = data.document;
      this.#info = doc;
      if (this.#ot === void 0) {
        this.#ot = new OtState({
          version: doc.version,
          content: doc.content,
          strategy: doc.conflict_strategy
        });
      } else {
        const dropped = this.#ot.reset(doc.version, doc.content, doc.conflict_strategy);
        this.events.emit("change", {
          op: [],
          source: "remote",
          version: doc.version
        });
        if (this.#pendingRejection !== void 0 || dropped.length > 0) {
          const error = this.#pendingRejection ?? new Error("The document was reloaded from the server; local edits were dropped");
          this.events.emit("rejected", {
            error,
            dropped
          });
        }
      }
      this.#pendingRejection = void 0;
    }
    this.#phase = "live";
    const buffered = this.#buffer;
    this.#buffer = [];
    for (const event of buffered) {
      if (this.#phase !== "live") break;
      this.#handleEvent(event);
    }
    if (this.#phase !== "live") return;
    this.#retries = 0;
    this.events.emit("synced", {
      version: this.version,
      replayed: data.replayed ?? 0,
      resumed
    });
    this.#loaded?.resolve();
    this.#loaded = void 0;
    this.#flush();
    this.#sendPresence();
  }
  #pendingRejection;
  #handleEvent(message) {
    const ot = this.#ot;
    if (ot === void 0) return;
    switch (message.event) {
      case "operation_applied": {
        const op = message.operation;
        if (op === null) break;
        const inflightOp = ot.inflight?.op ?? [];
        const received = ot.receive(message.version, fromWireComponents(op.components), op.client_op_id);
        if (received.kind === "gap") {
          this.#subscribe(false);
          return;
        }
        if (received.kind === "ack") {
          this.events.emit("ack", {
            version: received.version,
            clientOpId: op.client_op_id,
            op: inflightOp
          });
          this.#flush();
        } else if (received.kind === "remote") {
          this.events.emit("change", {
            op: received.op,
            source: "remote",
            version: received.version,
            author: op.session_id
          });
        }
        break;
      }
      case "presence_updated": {
        const presence = message.presence;
        if (presence === void 0 || presence.session_id === this.#link.sessionId) break;
        if (presence.state === null) this.#presence.delete(presence.session_id);
        else this.#presence.set(presence.session_id, presence);
        this.events.emit("presence", {
          presence: this.#presence
        });
        break;
      }
      case "user_left": {
        let changed = false;
        for (const [session, presence] of this.#presence) {
          if (presence.user_id === message.user_id) changed = this.#presence.delete(session);
        }
        if (changed) this.events.emit("presence", {
          presence: this.#presence
        });
        break;
      }
      case "lock_acquired":
      case "lock_released": {
        const lock = message.lock;
        if (lock === void 0) break;
        if (message.event === "lock_acquired") this.#locks.set(lock.id, lock);
        else this.#locks.delete(lock.id);
        this.events.emit("locks", {
          locks: this.#locks
        });
        break;
      }
      case "resync_required":
        this.#subscribe(false);
        return;
      case "document_updated":
        if (message.document !== void 0) {
          this.#info = {
            ...message.document
          };
        }
        break;
    }
    this.events.emit("event", message);
  }
  /**
   * Send the next pending op when nothing is in flight; send the in-flight op again when it
   * was sent before the current subscription (a reconnect) or when `retry` is set.
   */
  #flush(retry = false) {
    const ot = this.#ot;
    if (ot === void 0 || this.#phase !== "live" || !this.#link.online) return;
    let next;
    if (ot.inflight !== null) {
      if (this.#inflightEpoch === this.#subscribeSeq && !retry) return;
      next = ot.resendable();
    } else {
      next = ot.takeSendable();
    }
    if (next === null) return;
    this.#inflightEpoch = this.#subscribeSeq;
    const clientOpId = next.clientOpId;
    this.#link.request({
      type: "op",
      document_id: this.id,
      base_version: next.baseVersion,
      client_op_id: clientOpId,
      components: toWireComponents(next.op)
    }).then((reply) => {
      if (reply.held === true) {
        this.#reject(new RequestError("ABORTED", "Operation held as a conflict"));
        return;
      }
      const inflightOp = ot.inflight?.op ?? [];
      if (ot.ack(reply.version, clientOpId)) {
        this.events.emit("ack", {
          version: reply.version,
          clientOpId,
          op: inflightOp
        });
        this.#flush();
      }
    }, (error) => {
      if (this.#phase === "closed" || ot.inflight?.clientOpId !== clientOpId) return;
      if (error.status === "DISCONNECTED") return;
      if (TRANSIENT.has(error.status)) {
        const delay = this.#link.retryDelay(this.#retries++);
        this.#link.clearTimeout(this.#retryTimer);
        this.#retryTimer = this.#link.setTimeout(() => this.#flush(true), delay);
        return;
      }
      this.#reject(error);
    });
  }
  /** The server refused our op: reload the document and drop local ops (ShareDB's hard rollback). */
  #reject(error) {
    this.#pendingRejection = error;
    this.#subscribe(true);
  }
  #sendPresence() {
    if (this.#phase !== "live" || !this.#link.online || this.#presenceBusy) return;
    const state = this.#myPresence;
    if (state === void 0) return;
    if (state === this.#presenceSent && this.#presenceTimer !== void 0) return;
    this.#presenceBusy = true;
    this.#presenceSent = state;
    this.#link.clearTimeout(this.#presenceTimer);
    this.#presenceTimer = void 0;
    const message = {
      type: "presence",
      document_id: this.id
    };
    if (state !== null) {
      message.state = state;
      message.ttl_ms = PRESENCE_TTL_MS;
    }
    this.#link.request(message).then(() => {
      this.#presenceBusy = false;
      if (this.#phase !== "live") return;
      if (state !== null) {
        this.#presenceTimer = this.#link.setTimeout(() => {
          this.#presenceTimer = void 0;
          this.#presenceSent = void 0;
          this.#sendPresence();
        }, PRESENCE_TTL_MS / 2);
      }
      if (this.#myPresence !== state) this.#sendPresence();
    }, (error) => {
      this.#presenceBusy = false;
      this.#presenceSent = void 0;
      if (error.status !== "DISCONNECTED") this.events.emit("error", {
        error
      });
    });
  }
  #clearTimers() {
    this.#link.clearTimeout(this.#presenceTimer);
    this.#link.clearTimeout(this.#retryTimer);
    this.#presenceTimer = void 0;
    this.#retryTimer = void 0;
  }
};

// gateway/client/client.ts
var FATAL_CLOSE = /* @__PURE__ */ new Set([
  4004
]);
var AUTH_CLOSE = /* @__PURE__ */ new Set([
  4001,
  4003
]);
var AetherFlowClient = class {
  /** Typed events. */
  events = new Emitter();
  #url;
  #auth;
  #socketFactory;
  #clock;
  #random;
  #backoff;
  #requestTimeoutMs;
  #refreshMarginMs;
  #idleTimeoutMs;
  #connectTimeoutMs;
  #onlineSource;
  #offOnline;
  #status = "idle";
  #socket;
  #authed = false;
  #attempt = 0;
  #forceRefresh = false;
  #retryTimer;
  #refreshTimer;
  #idleTimer;
  #nextId = 1;
  #requests = /* @__PURE__ */ new Map();
  #docs = /* @__PURE__ */ new Map();
  #channels = /* @__PURE__ */ new Set();
  #userId;
  #sessionId;
  #link;
  constructor(options) {
    this.#url = options.url;
    this.#auth = options.auth;
    this.#socketFactory = options.socket ?? ((url) => new WebSocket(url));
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#backoff = options.backoff ?? {
      baseMs: 250,
      maxMs: 1e4
    };
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 15e3;
    this.#refreshMarginMs = options.refreshMarginMs ?? 6e4;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 45e3;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 1e4;
    this.#onlineSource = options.online ?? browserOnlineSource();
    const isOnline = () => this.#authed;
    const sessionId = () => this.#sessionId;
    this.#link = {
      request: (message) => this.#request(message),
      get online() {
        return isOnline();
      },
      get sessionId() {
        return sessionId();
      },
      retryDelay: (attempt) => this.#delay(attempt),
      setTimeout: (fn, ms) => this.#clock.setTimeout(fn, ms),
      clearTimeout: (handle) => this.#clock.clearTimeout(handle),
      forget: (documentId) => this.#docs.delete(documentId)
    };
  }
  /** Current connection status. */
  get status() {
    return this.#status;
  }
  /** Our user id, once authenticated. */
  get userId() {
    return this.#userId;
  }
  /** Our session id, once authenticated. */
  get sessionId() {
    return this.#sessionId;
  }
  /** Local op components not yet acknowledged, over all open documents. */
  get queued() {
    let n = 0;
    for (const doc of this.#docs.values()) n += doc.queued;
    return n;
  }
  /** Start connecting (idempotent). Reconnects on its own until close(). */
  connect() {
    if (this.#status !== "idle") return;
    this.#offOnline = this.#onlineSource?.subscribe((online) => this.#onNetwork(online));
    this.#setStatus("connecting");
    this.#attemptConnect();
  }
  /**
   * Open (subscribe to) a document; resolves once its content is loaded. Works offline:
   * the promise waits for the connection.
   * @throws {RequestError} e.g. NOT_FOUND, PERMISSION_DENIED
   * @throws {Error} after close()
   */
  async open(documentId) {
    if (this.#status === "closed") throw new Error("Cannot open a document: the client is closed");
    let doc = this.#docs.get(documentId);
    if (doc === void 0) {
      doc = new DocHandle(documentId, this.#link);
      this.#docs.set(documentId, doc);
      const loaded = doc.whenLoaded();
      if (this.#authed) doc.onOnline();
      try {
        await loaded;
      } catch (error) {
        this.#docs.delete(documentId);
        throw error;
      }
      return doc;
    }
    await doc.whenLoaded();
    return doc;
  }
  /** Subscribe to a plain channel (messages arrive as `message` events). */
  async subscribeChannel(channel) {
    this.#channels.add(channel);
    if (this.#authed) await this.#request({
      type: "subscribe",
      channel
    });
  }
  /** Publish to a channel; resolves with the number of deliveries. @throws {RequestError} */
  async publish(channel, data) {
    const reply = await this.#request({
      type: "publish",
      channel,
      data
    });
    return reply.data.delivered;
  }
  /** Close the connection and every document; no reconnects. */
  async close() {
    if (this.#status === "closed") return;
    const docs = [
      ...this.#docs.values()
    ];
    await Promise.all(docs.map((doc) => doc.close()));
    this.#shutdown("closed");
  }
  /** Drop the current socket as if the network failed (it reconnects). For tests and demos. */
  dropConnection() {
    this.#socket?.close(4e3, "Dropped by client");
    if (this.#socket !== void 0) this.#onClose(this.#socket, 4e3, "Dropped by client");
  }
  // ---- connection ----
  #setStatus(status, delayMs) {
    if (this.#status === status && delayMs === void 0) return;
    this.#status = status;
    this.events.emit("status", {
      status,
      attempt: this.#attempt,
      ...delayMs === void 0 ? {} : {
        delayMs
      }
    });
  }
  #isClosed() {
    return this.#status === "closed";
  }
  #delay(attempt) {
    return backoffDelay(attempt, {
      ...this.#backoff,
      random: this.#random
    });
  }
  async #attemptConnect() {
    this.#retryTimer = void 0;
    if (this.#status === "closed") return;
    if (this.#onlineSource !== void 0 && !this.#onlineSource.isOnline()) {
      this.#setStatus("offline");
      return;
    }
    let token;
    try {
      const access = this.#forceRefresh ? await this.#auth.refresh() : await this.#auth.getToken();
      this.#forceRefresh = false;
      token = access.token;
    } catch (error) {
      if (this.#isClosed()) return;
      if (error instanceof ApiError && error.status === 401) {
        this.events.emit("error", {
          error
        });
        this.#shutdown("closed");
        return;
      }
      this.events.emit("error", {
        error: asError(error)
      });
      this.#scheduleReconnect();
      return;
    }
    if (this.#isClosed() || this.#socket !== void 0) return;
    let socket;
    try {
      socket = this.#socketFactory(this.#url);
    } catch (error) {
      this.events.emit("error", {
        error: asError(error)
      });
      this.#scheduleReconnect();
      return;
    }
    this.#socket = socket;
    this.#touch(this.#connectTimeoutMs);
    socket.onopen = () => {
      if (this.#socket !== socket) return;
      this.#request({
        type: "auth",
        token
      }, socket).then((reply) => this.#onAuthenticated(reply), () => {
      });
    };
    socket.onmessage = (event) => {
      if (this.#socket !== socket) return;
      this.#onMessage(event.data);
    };
    socket.onclose = (event) => this.#onClose(socket, event.code, event.reason);
    socket.onerror = () => {
    };
  }
  #onAuthenticated(reply) {
    const data = reply.data;
    this.#userId = data.user_id;
    this.#sessionId = data.session_id;
    const first = !this.#authed;
    this.#authed = true;
    this.#touch();
    this.#scheduleRefresh(data.expires_at);
    this.events.emit("authenticated", {
      userId: data.user_id,
      sessionId: data.session_id,
      expiresAt: data.expires_at
    });
    if (!first) return;
    this.#attempt = 0;
    this.#setStatus("online");
    for (const channel of this.#channels) {
      this.#request({
        type: "subscribe",
        channel
      }).catch(() => {
      });
    }
    for (const doc of this.#docs.values()) doc.onOnline();
  }
  #scheduleRefresh(expiresAt) {
    this.#clock.clearTimeout(this.#refreshTimer);
    const left = expiresAt - this.#clock.now();
    const lead = Math.min(this.#refreshMarginMs, left / 3);
    this.#refreshTimer = this.#clock.setTimeout(() => {
      this.#refreshTimer = void 0;
      this.#refreshOnSocket();
    }, Math.max(0, left - lead));
  }
  async #refreshOnSocket() {
    const socket = this.#socket;
    if (socket === void 0 || !this.#authed) return;
    try {
      const { token } = await this.#auth.refresh();
      if (this.#socket !== socket || !this.#authed) return;
      const reply = await this.#request({
        type: "refresh",
        token
      });
      this.#onAuthenticated(reply);
    } catch (error) {
      this.events.emit("error", {
        error: asError(error)
      });
      if (error instanceof ApiError && error.status === 401) {
        this.#shutdown("closed");
        return;
      }
      if (this.#socket === socket) {
        this.#refreshTimer = this.#clock.setTimeout(() => this.#refreshOnSocket(), 1e3 + this.#delay(2));
      }
    }
  }
  /** (Re)arm the dead-socket timer: `ms` without an incoming message closes the socket. */
  #touch(ms = this.#authed ? this.#idleTimeoutMs : this.#connectTimeoutMs) {
    this.#clock.clearTimeout(this.#idleTimer);
    const socket = this.#socket;
    this.#idleTimer = this.#clock.setTimeout(() => {
      if (this.#socket !== socket || socket === void 0) return;
      socket.close(4e3, "Connection timed out");
      this.#onClose(socket, 4e3, "Connection timed out");
    }, ms);
  }
  #onMessage(raw) {
    this.#touch();
    let message;
    try {
      message = JSON.parse(String(raw));
    } catch (error) {
      this.events.emit("error", {
        error: asError(error)
      });
      return;
    }
    switch (message.type) {
      case "ping":
        this.#sendRaw({
          type: "pong"
        });
        return;
      case "reply":
      case "ack":
      case "error":
      case "pong": {
        const id = message.id;
        const pending = id === null || id === void 0 ? void 0 : this.#requests.get(String(id));
        if (pending === void 0) {
          if (message.type === "error") {
            this.events.emit("error", {
              error: new RequestError(String(message.status), String(message.message))
            });
          }
          return;
        }
        this.#requests.delete(String(id));
        this.#clock.clearTimeout(pending.timer);
        if (message.type === "error") {
          pending.reject(new RequestError(String(message.status), String(message.message)));
        } else {
          pending.resolve(message);
        }
        return;
      }
      case "event": {
        const doc = this.#docs.get(String(message.document_id));
        doc?.onEvent(message);
        return;
      }
      case "message":
        this.events.emit("message", {
          channel: String(message.channel),
          from: String(message.from),
          data: message.data
        });
        return;
    }
  }
  #sendRaw(message, socket = this.#socket) {
    if (socket === void 0 || socket.readyState !== 1) return false;
    try {
      socket.send(JSON.stringify(message));
      return true;
    } catch {
      return false;
    }
  }
  #request(message, socket = this.#socket) {
    const authMessage = message.type === "auth";
    if (socket === void 0 || !authMessage && !this.#authed) {
      return Promise.reject(new RequestError("DISCONNECTED", "Not connected"));
    }
    const id = `c${this.#nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        this.#requests.delete(id);
        reject(new RequestError("TIMEOUT", `No reply to ${String(message.type)} in time`));
      }, this.#requestTimeoutMs);
      this.#requests.set(id, {
        resolve,
        reject,
        timer
      });
      if (!this.#sendRaw({
        ...message,
        id
      }, socket)) {
        this.#requests.delete(id);
        this.#clock.clearTimeout(timer);
        reject(new RequestError("DISCONNECTED", "Not connected"));
      }
    });
  }
  #onClose(socket, code, reason) {
    if (this.#socket !== socket) return;
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    this.#socket = void 0;
    this.#authed = false;
    this.#clock.clearTimeout(this.#refreshTimer);
    this.#clock.clearTimeout(this.#idleTimer);
    this.#refreshTimer = this.#idleTimer = void 0;
    this.#failRequests();
    for (const doc of this.#docs.values()) doc.onOffline();
    this.events.emit("disconnected", {
      code,
      reason
    });
    if (this.#status === "closed") return;
    if (FATAL_CLOSE.has(code)) {
      this.events.emit("error", {
        error: new RequestError("UNAUTHENTICATED", reason)
      });
      this.#shutdown("closed");
      return;
    }
    if (AUTH_CLOSE.has(code)) this.#forceRefresh = true;
    if (this.#onlineSource !== void 0 && !this.#onlineSource.isOnline()) {
      this.#setStatus("offline");
      return;
    }
    this.#scheduleReconnect();
  }
  #scheduleReconnect() {
    if (this.#status === "closed" || this.#retryTimer !== void 0) return;
    const delay = this.#delay(this.#attempt);
    this.#attempt++;
    this.#setStatus("reconnecting", delay);
    this.#retryTimer = this.#clock.setTimeout(() => this.#attemptConnect(), delay);
  }
  #onNetwork(online) {
    if (this.#status === "closed" || this.#status === "idle") return;
    if (!online) {
      this.#clock.clearTimeout(this.#retryTimer);
      this.#retryTimer = void 0;
      const socket = this.#socket;
      if (socket !== void 0) {
        socket.close(4e3, "Network offline");
        this.#onClose(socket, 4e3, "Network offline");
      }
      this.#setStatus("offline");
      return;
    }
    if (this.#socket === void 0) {
      this.#clock.clearTimeout(this.#retryTimer);
      this.#retryTimer = void 0;
      this.#setStatus("reconnecting", 0);
      this.#attemptConnect();
    }
  }
  #failRequests() {
    const requests = [
      ...this.#requests.values()
    ];
    this.#requests.clear();
    for (const pending of requests) {
      this.#clock.clearTimeout(pending.timer);
      pending.reject(new RequestError("DISCONNECTED", "Connection lost"));
    }
  }
  #shutdown(status) {
    this.#setStatus(status);
    this.#offOnline?.();
    this.#offOnline = void 0;
    this.#clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = void 0;
    const socket = this.#socket;
    if (socket !== void 0) {
      socket.close(1e3, "Client closed");
      this.#onClose(socket, 1e3, "Client closed");
    }
    for (const doc of this.#docs.values()) doc.onOffline();
  }
};
function asError(error) {
  return error instanceof Error ? error : new Error(String(error));
}
function browserOnlineSource() {
  const g = globalThis;
  if (g.document === void 0 || typeof g.navigator?.onLine !== "boolean") return void 0;
  if (g.addEventListener === void 0 || g.removeEventListener === void 0) return void 0;
  return {
    isOnline: () => g.navigator?.onLine !== false,
    subscribe(listener) {
      const on = () => listener(true);
      const off = () => listener(false);
      g.addEventListener("online", on);
      g.addEventListener("offline", off);
      return () => {
        g.removeEventListener("online", on);
        g.removeEventListener("offline", off);
      };
    }
  };
}

// gateway/client/text.ts
function textEditOp(before, after, path, caret) {
  if (before === after) return [];
  const min = Math.min(before.length, after.length);
  const sameAt = (i) => before.charCodeAt(i) === after.charCodeAt(i);
  const sameFromEnd = (i) => before.charCodeAt(before.length - 1 - i) === after.charCodeAt(after.length - 1 - i);
  let prefix = 0;
  let suffix = 0;
  if (caret !== void 0 && caret >= 0 && caret <= after.length) {
    const maxSuffix = Math.min(min, after.length - caret);
    while (suffix < maxSuffix && sameFromEnd(suffix)) suffix++;
    while (prefix < min - suffix && sameAt(prefix)) prefix++;
  } else {
    while (prefix < min && sameAt(prefix)) prefix++;
    while (suffix < min - prefix && sameFromEnd(suffix)) suffix++;
  }
  if (prefix > 0 && isHighSurrogate(before.charCodeAt(prefix - 1))) prefix--;
  if (suffix > 0 && isLowSurrogate(before.charCodeAt(before.length - suffix))) suffix--;
  const removed = before.length - prefix - suffix;
  const inserted = after.slice(prefix, after.length - suffix);
  const op = [];
  if (removed > 0) {
    op.push({
      path,
      action: {
        type: "text_delete",
        offset: prefix,
        length: removed
      }
    });
  }
  if (inserted.length > 0) {
    op.push({
      path,
      action: {
        type: "text_insert",
        offset: prefix,
        text: inserted
      }
    });
  }
  return op;
}
function transformIndex(index, op, path, options = {}) {
  let out = index;
  for (const c of op) {
    if (!samePath2(c.path, path)) continue;
    const a = c.action;
    if (a.type === "text_insert") {
      if (a.offset < out || a.offset === out && options.pushedByInsertAt === true) {
        out += a.text.length;
      }
    } else if (a.type === "text_delete") {
      if (a.offset < out) out -= Math.min(a.length, out - a.offset);
    } else if (a.type === "set") {
      out = Math.min(out, typeof a.value === "string" ? a.value.length : 0);
    }
  }
  return options.length === void 0 ? out : Math.min(Math.max(0, out), options.length);
}
function transformSelection(selection, op, path, options = {}) {
  const start = transformIndex(selection.start, op, path, options);
  const end = selection.end === selection.start ? start : transformIndex(selection.end, op, path, options);
  return {
    start,
    end: Math.max(start, end)
  };
}
function samePath2(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
function isHighSurrogate(code) {
  return code >= 55296 && code <= 56319;
}
function isLowSurrogate(code) {
  return code >= 56320 && code <= 57343;
}
export {
  AetherFlowClient,
  ApiError,
  DEFAULT_BACKOFF,
  DocHandle,
  Emitter,
  ManualClock,
  OtState,
  RequestError,
  RestAuth,
  backoffDelay,
  fromWireComponents,
  systemClock,
  textEditOp,
  toWireComponents,
  transformIndex,
  transformSelection
};
