/*
 * SHA-256 work of layer hashing, off the main thread: the level-0 dm-verity hashes of runs of
 * 4096-byte blocks (sha256(salt || block), the salt being 32 zero bytes, as Azure uses for
 * container layers), and the streaming SHA-256 of the layer tar (its diff_id).
 *
 * JavaScript could do both, but one crypto.hash() call per block costs about 1 us on top of
 * the hashing itself, and all of it holds the main thread. Here the work runs on the libuv
 * thread pool, so the caller keeps reading and parsing the layer meanwhile.
 *
 * SHA-256 comes from the OpenSSL that Node.js itself carries (its symbols are exported to
 * addons), so the hardware SHA extensions are used where the CPU has them. The addon is
 * optional: shared/targets/aci/ext4/native-hashing.ts falls back to JavaScript without it.
 *
 * Exports:
 *   hashBlocks(input: Uint8Array, output: Uint8Array): void
 *   hashBlocksAsync(input: Uint8Array, output: Uint8Array): Promise<void>
 *     input.length must be a multiple of 4096 and output.length exactly 32 per block.
 *   sha256Create(): object
 *   sha256UpdateAsync(state: object, chunks: Uint8Array[]): Promise<void>
 *   sha256Final(state: object): Uint8Array   (32 bytes; the state cannot be used again)
 *     At most one update of a state may be running at a time.
 * The caller must not change any buffer it passed until the promise settles.
 *
 * NOTE: nor may it detach one (transfer its ArrayBuffer away): N-API can keep a typed array
 * alive but cannot pin its memory, so a detached buffer could be freed under a running job.
 * ccpipe passes only stream chunks and its own spool buffers, which are never transferred;
 * the addon is loaded only by shared/targets/aci/ext4/native-hashing.ts.
 */
#define NAPI_VERSION 8
#define OPENSSL_SUPPRESS_DEPRECATED
#include <node_api.h>
#include <openssl/sha.h>
#include "sha256-x16.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_SIZE 4096
#define HASH_SIZE 32

static SHA256_CTX salted;

static int use_x16;

static void hash_blocks(const unsigned char *input, size_t blocks, unsigned char *output) {
  size_t i = 0;

  if (use_x16) {
    for (; i + 16 <= blocks; i += 16) {
      verity_hash_x16(input + i * BLOCK_SIZE, output + i * HASH_SIZE);
    }
  }
  for (; i < blocks; i++) {
    SHA256_CTX ctx = salted;
    SHA256_Update(&ctx, input + i * BLOCK_SIZE, BLOCK_SIZE);
    SHA256_Final(output + i * HASH_SIZE, &ctx);
  }
}

/* setSimd(on: boolean): boolean -- turns the 16-lane path on or off (where the CPU has it)
 * and returns whether it is now used; for tests and comparisons. */
static napi_value set_simd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1];
  napi_value result;
  bool on = false;

  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc >= 1) napi_get_value_bool(env, args[0], &on);
  use_x16 = on && verity_x16_available();
  napi_get_boolean(env, use_x16, &result);
  return result;
}

typedef struct {
  const unsigned char *input;
  unsigned char *output;
  size_t blocks;
} Span;

/* Reads (input, output) arguments; throws and returns 0 when they do not fit together. */
static int read_span(napi_env env, napi_value *args, Span *span) {
  napi_typedarray_type type;
  size_t length[2];
  void *data[2];
  napi_value buffer;
  size_t offset;

  for (int i = 0; i < 2; i++) {
    bool is_typed = false;
    napi_is_typedarray(env, args[i], &is_typed);
    if (!is_typed) {
      napi_throw_type_error(env, NULL, "hashBlocks: input and output must be Uint8Arrays");
      return 0;
    }
    napi_get_typedarray_info(env, args[i], &type, &length[i], &data[i], &buffer, &offset);
    if (type != napi_uint8_array) {
      napi_throw_type_error(env, NULL, "hashBlocks: input and output must be Uint8Arrays");
      return 0;
    }
  }
  if (length[0] % BLOCK_SIZE != 0 || length[1] != length[0] / BLOCK_SIZE * HASH_SIZE) {
    napi_throw_range_error(env, NULL,
                           "hashBlocks: input must be whole 4096-byte blocks and output "
                           "32 bytes per block");
    return 0;
  }
  span->input = data[0];
  span->output = data[1];
  span->blocks = length[0] / BLOCK_SIZE;
  return 1;
}

static napi_value hash_blocks_sync(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  Span span;

  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "hashBlocks: expected (input, output)");
    return NULL;
  }
  if (!read_span(env, args, &span)) return NULL;

  hash_blocks(span.input, span.blocks, span.output);
  return NULL;
}

typedef struct {
  Span span;
  napi_ref refs[2];
  napi_deferred deferred;
  napi_async_work work;
} Job;

static void job_execute(napi_env env, void *data) {
  (void)env;
  Job *job = data;
  hash_blocks(job->span.input, job->span.blocks, job->span.output);
}

static void job_complete(napi_env env, napi_status status, void *data) {
  Job *job = data;
  napi_value result;

  if (status == napi_ok) {
    napi_get_undefined(env, &result);
    napi_resolve_deferred(env, job->deferred, result);
  } else {
    napi_value message;
    napi_create_string_utf8(env, "hashBlocksAsync: cancelled", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &result);
    napi_reject_deferred(env, job->deferred, result);
  }
  napi_delete_reference(env, job->refs[0]);
  napi_delete_reference(env, job->refs[1]);
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value hash_blocks_async(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  napi_value promise;
  napi_value name;
  Job *job;

  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "hashBlocksAsync: expected (input, output)");
    return NULL;
  }
  job = calloc(1, sizeof(Job));
  if (job == NULL) {
    napi_throw_error(env, NULL, "hashBlocksAsync: out of memory");
    return NULL;
  }
  if (!read_span(env, args, &job->span)) {
    free(job);
    return NULL;
  }

  /* The references keep both buffers alive (their memory never moves) until completion. */
  napi_create_reference(env, args[0], 1, &job->refs[0]);
  napi_create_reference(env, args[1], 1, &job->refs[1]);
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "ccpipe.verityBlocks", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, job_execute, job_complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

/* ---- streaming SHA-256 --------------------------------------------------------------- */

typedef struct {
  SHA256_CTX ctx;
  int busy;
  int final;
} Digest;

/* Marks the externals sha256Create makes, so that no other external passes for a state. */
static const napi_type_tag DIGEST_TAG = {0x6363706970652d73ULL, 0x6861323536737431ULL};

static void digest_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static napi_value sha256_create(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  Digest *digest = calloc(1, sizeof(Digest));

  if (digest == NULL) {
    napi_throw_error(env, NULL, "sha256Create: out of memory");
    return NULL;
  }
  SHA256_Init(&digest->ctx);
  if (napi_create_external(env, digest, digest_free, NULL, &result) != napi_ok) {
    free(digest);
    napi_throw_error(env, NULL, "sha256Create: could not create the state");
    return NULL;
  }
  napi_type_tag_object(env, result, &DIGEST_TAG);
  return result;
}

/* The Digest behind a state argument, or NULL (having thrown) when it is not one to use. */
static Digest *usable_digest(napi_env env, napi_value value, const char *what) {
  napi_valuetype type;
  Digest *digest = NULL;

  bool ours = false;

  napi_typeof(env, value, &type);
  if (type == napi_external) napi_check_object_type_tag(env, value, &DIGEST_TAG, &ours);
  if (!ours) {
    napi_throw_type_error(env, NULL, "sha256: expected a state from sha256Create");
    return NULL;
  }
  napi_get_value_external(env, value, (void **)&digest);
  if (digest->busy || digest->final) {
    napi_throw_error(env, NULL, what);
    return NULL;
  }
  return digest;
}

/* Most chunks one update takes (a batch of a few MiB is a few hundred). */
#define MAX_CHUNKS (1u << 20)

typedef struct {
  Digest *digest;
  size_t count;
  const unsigned char **data;
  size_t *length;
  /* The state, and every chunk: each is kept alive on its own, whatever becomes of the
   * array (shrunk, or its elements getters returning fresh arrays). */
  napi_ref state_ref;
  napi_ref *chunk_refs;
  size_t refs_made;
  napi_deferred deferred;
  napi_async_work work;
} Update;

static void update_free(napi_env env, Update *update) {
  if (update->state_ref != NULL) napi_delete_reference(env, update->state_ref);
  for (size_t i = 0; i < update->refs_made; i++) {
    napi_delete_reference(env, update->chunk_refs[i]);
  }
  free(update->chunk_refs);
  free(update->data);
  free(update->length);
  free(update);
}

static void update_execute(napi_env env, void *data) {
  (void)env;
  Update *update = data;
  for (size_t i = 0; i < update->count; i++) {
    SHA256_Update(&update->digest->ctx, update->data[i], update->length[i]);
  }
}

static void update_complete(napi_env env, napi_status status, void *data) {
  Update *update = data;
  napi_value result;

  update->digest->busy = 0;
  if (status == napi_ok) {
    napi_get_undefined(env, &result);
    napi_resolve_deferred(env, update->deferred, result);
  } else {
    napi_value message;
    update->digest->final = 1; /* some bytes may be missing: never give a digest */
    napi_create_string_utf8(env, "sha256UpdateAsync: cancelled", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &result);
    napi_reject_deferred(env, update->deferred, result);
  }
  napi_delete_async_work(env, update->work);
  update_free(env, update);
}

/* Fills update->data/length from a JS array of Uint8Arrays; throws and returns 0 if not. */
static int read_chunks(napi_env env, napi_value array, Update *update) {
  bool is_array = false;
  uint32_t count = 0;

  napi_is_array(env, array, &is_array);
  if (!is_array) {
    napi_throw_type_error(env, NULL, "sha256UpdateAsync: chunks must be an array");
    return 0;
  }
  napi_get_array_length(env, array, &count);
  if (count > MAX_CHUNKS) {
    napi_throw_range_error(env, NULL, "sha256UpdateAsync: more than 1048576 chunks");
    return 0;
  }
  update->count = count;
  update->data = calloc((size_t)count + 1, sizeof *update->data);
  update->length = calloc((size_t)count + 1, sizeof *update->length);
  update->chunk_refs = calloc((size_t)count + 1, sizeof *update->chunk_refs);
  if (update->data == NULL || update->length == NULL || update->chunk_refs == NULL) {
    napi_throw_error(env, NULL, "sha256UpdateAsync: out of memory");
    return 0;
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value item, buffer;
    napi_typedarray_type type;
    bool is_typed = false;
    size_t offset;
    void *bytes;

    napi_get_element(env, array, i, &item);
    napi_is_typedarray(env, item, &is_typed);
    if (!is_typed) {
      napi_throw_type_error(env, NULL, "sha256UpdateAsync: chunks must be Uint8Arrays");
      return 0;
    }
    napi_get_typedarray_info(env, item, &type, &update->length[i], &bytes, &buffer, &offset);
    if (type != napi_uint8_array) {
      napi_throw_type_error(env, NULL, "sha256UpdateAsync: chunks must be Uint8Arrays");
      return 0;
    }
    if (napi_create_reference(env, item, 1, &update->chunk_refs[i]) != napi_ok) {
      napi_throw_error(env, NULL, "sha256UpdateAsync: could not hold a chunk");
      return 0;
    }
    update->refs_made = (size_t)i + 1;
    update->data[i] = bytes;
  }
  return 1;
}

static napi_value sha256_update_async(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  napi_value promise;
  napi_value name;
  Update *update;
  Digest *digest;

  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "sha256UpdateAsync: expected (state, chunks)");
    return NULL;
  }
  digest = usable_digest(env, args[0], "sha256UpdateAsync: state busy or finished");
  if (digest == NULL) return NULL;
  update = calloc(1, sizeof(Update));
  if (update == NULL) {
    napi_throw_error(env, NULL, "sha256UpdateAsync: out of memory");
    return NULL;
  }
  update->digest = digest;
  if (!read_chunks(env, args[1], update)) {
    update_free(env, update);
    return NULL;
  }

  /* The state and the array (which holds the chunks) stay alive until completion. */
  napi_create_reference(env, args[0], 1, &update->state_ref);
  napi_create_promise(env, &update->deferred, &promise);
  napi_create_string_utf8(env, "ccpipe.sha256Update", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, update_execute, update_complete, update,
                         &update->work);
  digest->busy = 1;
  napi_queue_async_work(env, update->work);
  return promise;
}

static napi_value sha256_final(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1];
  napi_value result;
  void *bytes;
  Digest *digest;

  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "sha256Final: expected (state)");
    return NULL;
  }
  digest = usable_digest(env, args[0], "sha256Final: state busy or finished");
  if (digest == NULL) return NULL;

  digest->final = 1;
  napi_create_buffer(env, HASH_SIZE, &bytes, &result);
  SHA256_Final(bytes, &digest->ctx);
  return result;
}

/* ---- module ----------------------------------------------------------------------------- */

static void export_function(napi_env env, napi_value exports, const char *name,
                            napi_callback callback) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, callback, NULL, &fn);
  napi_set_named_property(env, exports, name, fn);
}

/* Process-wide state, set up once: worker threads may load the addon again while jobs of
 * earlier loads read it. */
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;

static void setup(void) {
  static const unsigned char salt[HASH_SIZE] = {0};

  use_x16 = verity_x16_available();
  SHA256_Init(&salted);
  SHA256_Update(&salted, salt, sizeof salt);
}

NAPI_MODULE_INIT() {
  pthread_once(&setup_once, setup);

  export_function(env, exports, "hashBlocks", hash_blocks_sync);
  export_function(env, exports, "hashBlocksAsync", hash_blocks_async);
  export_function(env, exports, "sha256Create", sha256_create);
  export_function(env, exports, "sha256UpdateAsync", sha256_update_async);
  export_function(env, exports, "sha256Final", sha256_final);
  export_function(env, exports, "setSimd", set_simd);
  return exports;
}
