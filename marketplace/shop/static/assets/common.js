// Shared by every page: building DOM from data (as text, never HTML), calling the JSON API, money, storage.
import { EXPONENTS, MAXIMUM_AMOUNT, MINIMUMS, STEPS } from "/shop/currencies.js";

// ---- DOM --------------------------------------------------------------------------------------
// h("p", {class: "x", text: "…"}, child, "text", …): every string becomes a text node (never markup).
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function $(selector) {
  const node = document.querySelector(selector);
  if (!node) throw new Error(`missing element ${selector}`);
  return node;
}

export function notice(node, kind, ...content) {
  node.className = `notice ${kind}`;
  node.replaceChildren(...content.map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
}

export function clearNotice(node) {
  node.className = "notice";
  node.replaceChildren();
}

// ---- money ------------------------------------------------------------------------------------
// Amounts are integers in the currency's minor unit; the exponent is Stripe's (JPY 0, USD 2, KWD 3).
export function exponent(currency) {
  const found = EXPONENTS[String(currency).toLowerCase()];
  return found === undefined ? 2 : found;
}

export function currencies() {
  return Object.keys(EXPONENTS);
}

const formatters = new Map();

export function formatMoney(amount, currency) {
  const code = String(currency).toUpperCase();
  const places = exponent(code);
  let format = formatters.get(code);
  if (!format) {
    format = new Intl.NumberFormat(undefined, {
      style: "currency",
      currency: code,
      minimumFractionDigits: places,
      maximumFractionDigits: places,
    });
    formatters.set(code, format);
  }
  // An exact decimal string ("1.250"), not a float: Intl formats strings without binary rounding.
  return format.format(`${amount < 0 ? "-" : ""}${typedForm(Math.abs(amount), places)}`);
}

// Stripe's rules per currency, in minor units (connect.currencies, served as /shop/currencies.js).
const stepOf = (code) => STEPS[code] || 1;
const minimumOf = (code) => MINIMUMS[code] || stepOf(code);

// A minor-unit amount as a person types it: 1250 USD → "12.50", 1230 KWD → "1.230", 250 JPY → "250".
function typedForm(minor, places) {
  const digits = String(minor).padStart(places + 1, "0");
  return places ? `${digits.slice(0, -places)}.${digits.slice(-places)}` : digits;
}

// A round price to show as an example: 25, 250 or 2500 of the major unit, whichever Stripe takes.
function examplePrice(code, places) {
  const unit = 10 ** places;
  const minor = [25 * unit, 250 * unit, 2500 * unit].find((m) => m >= minimumOf(code)) || 2500 * unit;
  return typedForm(minor, places);
}

// A price as a person types it ("25.00" USD → 2500, "250" JPY → 250, "1.250" KWD → 1250): {amount}, or
// {problem}, one sentence of ours saying what to type instead, in the currency's own units (never cents):
// the form (digits, a point for decimals), the currency's decimals and Stripe's step, its minimum and
// maximum. The API checks the same again (connect.currencies).
export function readPrice(typed, currency) {
  const code = String(currency).toLowerCase();
  const label = code.toUpperCase();
  const places = exponent(code);
  const step = stepOf(code);
  const match = /^(\d+)(?:\.(\d+))?$/.exec(String(typed).trim());
  if (!match) {
    const example = examplePrice(code, places);
    if (!places) return { problem: `Write a ${label} price as a whole number with no point, commas or spaces, for example ${example}.` };
    return { problem: `Write the price in digits with a point for decimals and no commas or spaces, for example ${example}.` };
  }
  let fraction = match[2] || "";
  if (fraction.length > places && /^0*$/.test(fraction.slice(places))) fraction = fraction.slice(0, places); // "25.000" USD is 25.00
  const kept = BigInt(match[1]) * 10n ** BigInt(places) + BigInt(fraction.slice(0, places).padEnd(places, "0") || "0");
  if (fraction.length > places || kept % BigInt(step)) {
    // What they typed, cut to what Stripe takes (1.235 KWD → 1.230), as the example.
    const near = kept - (kept % BigInt(step));
    const example = near >= BigInt(minimumOf(code)) && near <= BigInt(MAXIMUM_AMOUNT) ? typedForm(near, places) : examplePrice(code, places);
    if (!places) return { problem: `${label} has no decimals, so write a whole number, for example ${example}.` };
    if (step > 1) {
      return { problem: `${label} has ${places} decimals and Stripe takes it only in steps of ${typedForm(step, places)}, so write for example ${example}.` };
    }
    return { problem: `${label} has ${places} decimals, so write at most ${places} digits after the point, for example ${example}.` };
  }
  const highest = MAXIMUM_AMOUNT - (MAXIMUM_AMOUNT % step);
  if (kept > BigInt(highest)) {
    return { problem: `The highest price Stripe takes in ${label} is ${formatMoney(highest, code)}, so write ${typedForm(highest, places)} or less.` };
  }
  const amount = Number(kept);
  if (amount < minimumOf(code)) {
    const lowest = minimumOf(code);
    return { problem: `The lowest price Stripe takes in ${label} is ${formatMoney(lowest, code)}, so write ${typedForm(lowest, places)} or more.` };
  }
  return { amount };
}

// ---- the JSON API -----------------------------------------------------------------------------
// No cookies are sent or used (credentials: "omit"): a token is sent only where the page adds it.
export async function api(method, path, { body, bearer, orderToken, idempotencyKey } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (orderToken) headers["X-Order-Token"] = orderToken;
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    return {
      ok: false,
      status: 0,
      data: null,
      headers: new Headers(),
      problem: { title: "Offline", detail: "The shop could not reach its server. Check your connection and try again." },
    };
  }
  let data = null;
  if ((response.headers.get("content-type") || "").includes("json")) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  const problem = response.ok ? null : data || { title: `Error ${response.status}`, detail: "" };
  return { ok: response.ok, status: response.status, data, headers: response.headers, problem };
}

export function slugOf(problem) {
  const type = (problem && problem.type) || "";
  return type.startsWith("urn:marketplace:problem:") ? type.slice("urn:marketplace:problem:".length) : "";
}

// One sentence (or a few) a person can read, from an RFC 9457 problem.
export function problemText(problem) {
  if (!problem) return "Something went wrong.";
  const parts = [problem.detail || problem.title || "Something went wrong."];
  if (Array.isArray(problem.errors)) {
    for (const error of problem.errors) {
      if (!error || !error.message) continue;
      const said = `${error.key ? `${error.key}: ` : ""}${error.message}`;
      if (!parts.some((part) => part.includes(error.message))) parts.push(said); // a detail may quote it already
    }
  }
  return parts.join(" ");
}

export function retryAfterMs(headers, fallbackMs) {
  const raw = headers.get("retry-after");
  if (raw === null) return fallbackMs;
  const seconds = Number(raw);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds, 300) * 1000;
  const at = Date.parse(raw);
  return Number.isFinite(at) ? Math.min(Math.max(at - Date.now(), 0), 300_000) : fallbackMs;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Only ever navigate to an http(s) URL the API handed us (Stripe's hosted pages).
export function leaveFor(url) {
  let target;
  try {
    target = new URL(url);
  } catch {
    return false;
  }
  if (target.protocol !== "https:" && target.protocol !== "http:") return false;
  window.location.assign(target.href);
  return true;
}

export function shortId(id) {
  return String(id).slice(0, 8);
}

export function formatDate(iso) {
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? String(iso) : at.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (value) => typeof value === "string" && UUID.test(value);

// ---- storage ----------------------------------------------------------------------------------
// A guest's order token: localStorage, keyed by order id, so a second tab of the success page has it.
const ORDER_TOKEN = "shop.order-token.";
// Bearer tokens (seller, buyer): sessionStorage, this tab only, gone when it closes (docs/pages.md).
export const SELLER_TOKEN = "shop.seller-token";
export const BUYER_TOKEN = "shop.buyer-token";

function safely(action, fallback = null) {
  try {
    return action();
  } catch {
    return fallback; // storage disabled or full: the page still works for this view
  }
}

export const orderToken = (orderId) => safely(() => localStorage.getItem(ORDER_TOKEN + orderId));
export const keepOrderToken = (orderId, token) => safely(() => localStorage.setItem(ORDER_TOKEN + orderId, token));
export const sessionToken = (key) => safely(() => sessionStorage.getItem(key));
export const keepSessionToken = (key, token) => safely(() => sessionStorage.setItem(key, token));
export const forgetSessionToken = (key) => safely(() => sessionStorage.removeItem(key));

export function markCurrentNav() {
  for (const link of document.querySelectorAll("header.top nav a")) {
    if (link.getAttribute("href") === window.location.pathname) link.setAttribute("aria-current", "page");
  }
}
