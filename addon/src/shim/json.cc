#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

namespace shim {

namespace {

struct Parser {
  const char* text;
  size_t len;
  size_t pos;
  const char* what;
  int depth;
};

const int kMaxDepth = 64;

int parse_error(Parser* p, const char* why) {
  return fail(0, "", p->what, "%s: %s at byte %zu", p->what, why, p->pos);
}

void skip_ws(Parser* p) {
  while (p->pos < p->len) {
    char c = p->text[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

bool literal(Parser* p, const char* word) {
  size_t n = strlen(word);
  if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n) != 0) return false;
  p->pos += n;
  return true;
}

int hex4(Parser* p, unsigned* out) {
  if (p->len - p->pos < 4) return parse_error(p, "short \\u escape");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p->text[p->pos++];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return parse_error(p, "bad \\u escape");
  }
  *out = v;
  return 0;
}

void put_utf8(Buf* b, unsigned cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) { u[0] = static_cast<char>(cp); n = 1; }
  else if (cp < 0x800) { u[0] = static_cast<char>(0xC0 | (cp >> 6)); u[1] = static_cast<char>(0x80 | (cp & 0x3F)); n = 2; }
  else if (cp < 0x10000) { u[0] = static_cast<char>(0xE0 | (cp >> 12)); u[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); u[2] = static_cast<char>(0x80 | (cp & 0x3F)); n = 3; }
  else { u[0] = static_cast<char>(0xF0 | (cp >> 18)); u[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F)); u[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); u[3] = static_cast<char>(0x80 | (cp & 0x3F)); n = 4; }
  b->append(u, n);
}

int parse_escape(Parser* p, Buf* b) {
  char c = p->text[p->pos++];
  switch (c) {
    case '"': case '\\': case '/': b->append(&c, 1); return 0;
    case 'b': b->append("\b", 1); return 0;
    case 'f': b->append("\f", 1); return 0;
    case 'n': b->append("\n", 1); return 0;
    case 'r': b->append("\r", 1); return 0;
    case 't': b->append("\t", 1); return 0;
    case 'u': {
      unsigned cp;
      if (hex4(p, &cp) < 0) return -1;
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        unsigned lo;
        if (!literal(p, "\\u") || hex4(p, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
          return parse_error(p, "unpaired surrogate");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return parse_error(p, "unpaired surrogate");
      }
      if (cp == 0) return parse_error(p, "NUL in string");
      put_utf8(b, cp);
      return 0;
    }
    default: return parse_error(p, "bad escape");
  }
}

int parse_string(Parser* p, char** out) {
  p->pos++;  // opening quote
  Buf b;
  while (p->pos < p->len) {
    char c = p->text[p->pos++];
    if (c == '"') {
      if (!b.data && !b.append("", 0)) return fail(ENOMEM, "malloc", p->what, "parsing");
      *out = b.data;
      return 0;
    }
    if (static_cast<unsigned char>(c) < 0x20) { b.release(); return parse_error(p, "control character in string"); }
    if (c == '\\') {
      if (p->pos >= p->len || parse_escape(p, &b) < 0) { b.release(); return p->pos >= p->len ? parse_error(p, "unterminated string") : -1; }
      continue;
    }
    b.append(&c, 1);
  }
  b.release();
  return parse_error(p, "unterminated string");
}

int parse_value(Parser* p, JsonNode* node);

int parse_number(Parser* p, JsonNode* node) {
  const char* start = p->text + p->pos;
  char* end = nullptr;
  // The buffer is NUL terminated by read_file, so strtod cannot run past it.
  double v = strtod(start, &end);
  if (end == start || !isfinite(v)) return parse_error(p, "bad number");
  p->pos += static_cast<size_t>(end - start);
  node->type = JsonType::Number;
  node->number = v;
  return 0;
}

int parse_container(Parser* p, JsonNode* node, bool object) {
  if (++p->depth > kMaxDepth) return parse_error(p, "nesting too deep");
  node->type = object ? JsonType::Object : JsonType::Array;
  p->pos++;
  JsonNode** tail = &node->child;
  skip_ws(p);
  if (p->pos < p->len && p->text[p->pos] == (object ? '}' : ']')) { p->pos++; p->depth--; return 0; }
  for (;;) {
    JsonNode* item = static_cast<JsonNode*>(calloc(1, sizeof(JsonNode)));
    if (!item) return fail(ENOMEM, "malloc", p->what, "parsing");
    *tail = item;
    tail = &item->next;
    skip_ws(p);
    if (object) {
      if (p->pos >= p->len || p->text[p->pos] != '"') return parse_error(p, "expected member name");
      if (parse_string(p, &item->key) < 0) return -1;
      skip_ws(p);
      if (p->pos >= p->len || p->text[p->pos] != ':') return parse_error(p, "expected ':'");
      p->pos++;
    }
    if (parse_value(p, item) < 0) return -1;
    skip_ws(p);
    if (p->pos >= p->len) return parse_error(p, "unterminated container");
    char c = p->text[p->pos++];
    if (c == ',') continue;
    if (c == (object ? '}' : ']')) { p->depth--; return 0; }
    return parse_error(p, "expected ',' or end of container");
  }
}

int parse_value(Parser* p, JsonNode* node) {
  skip_ws(p);
  if (p->pos >= p->len) return parse_error(p, "unexpected end");
  char c = p->text[p->pos];
  if (c == '{') return parse_container(p, node, true);
  if (c == '[') return parse_container(p, node, false);
  if (c == '"') { node->type = JsonType::String; return parse_string(p, &node->string); }
  if (literal(p, "true")) { node->type = JsonType::Bool; node->boolean = true; return 0; }
  if (literal(p, "false")) { node->type = JsonType::Bool; return 0; }
  if (literal(p, "null")) { node->type = JsonType::Null; return 0; }
  if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, node);
  return parse_error(p, "unexpected character");
}

}  // namespace

JsonNode* json_parse(const char* text, size_t len, const char* what) {
  Parser p{text, len, 0, what, 0};
  JsonNode* root = static_cast<JsonNode*>(calloc(1, sizeof(JsonNode)));
  if (!root) { fail(ENOMEM, "malloc", what, "parsing"); return nullptr; }
  if (parse_value(&p, root) < 0) { json_free(root); return nullptr; }
  skip_ws(&p);
  if (p.pos != p.len) { parse_error(&p, "trailing data"); json_free(root); return nullptr; }
  return root;
}

void json_free(JsonNode* node) {
  while (node) {
    JsonNode* next = node->next;
    json_free(node->child);
    free(node->string);
    free(node->key);
    free(node);
    node = next;
  }
}

const JsonNode* json_get(const JsonNode* obj, const char* key) {
  if (!obj || obj->type != JsonType::Object) return nullptr;
  for (const JsonNode* m = obj->child; m; m = m->next)
    if (strcmp(m->key, key) == 0) return m;
  return nullptr;
}

static int type_error(const char* where, const char* key, const char* want) {
  return fail(0, "", "config.json", "%s.%s must be %s", where, key, want);
}

int json_string(const JsonNode* obj, const char* key, const char** out, const char* where) {
  const JsonNode* v = json_get(obj, key);
  if (!v || v->type == JsonType::Null) return 0;
  if (v->type != JsonType::String) return type_error(where, key, "a string");
  *out = v->string;
  return 0;
}

int json_bool(const JsonNode* obj, const char* key, bool* out, const char* where) {
  const JsonNode* v = json_get(obj, key);
  if (!v || v->type == JsonType::Null) return 0;
  if (v->type != JsonType::Bool) return type_error(where, key, "a boolean");
  *out = v->boolean;
  return 0;
}

int json_int(const JsonNode* obj, const char* key, long long* out, const char* where) {
  const JsonNode* v = json_get(obj, key);
  if (!v || v->type == JsonType::Null) return 0;
  if (v->type != JsonType::Number || v->number != floor(v->number) || fabs(v->number) > 9.0e18)
    return type_error(where, key, "an integer");
  *out = static_cast<long long>(v->number);
  return 0;
}

int json_string_array(const JsonNode* obj, const char* key, const char*** out, size_t* count,
                      const char* where) {
  const JsonNode* v = json_get(obj, key);
  *count = 0;
  if (!v || v->type == JsonType::Null) {
    *out = static_cast<const char**>(calloc(1, sizeof(char*)));
    return *out ? 0 : fail(ENOMEM, "malloc", "", "allocating");
  }
  if (v->type != JsonType::Array) return type_error(where, key, "an array of strings");
  size_t n = 0;
  for (const JsonNode* e = v->child; e; e = e->next) {
    if (e->type != JsonType::String) return type_error(where, key, "an array of strings");
    n++;
  }
  const char** vec = static_cast<const char**>(calloc(n + 1, sizeof(char*)));
  if (!vec) return fail(ENOMEM, "malloc", "", "allocating");
  size_t i = 0;
  for (const JsonNode* e = v->child; e; e = e->next) vec[i++] = e->string;
  *out = vec;
  *count = n;
  return 0;
}

}  // namespace shim
