# The warren native addon (plain N-API, C). Built by `npm install`
# ("install": "node-gyp rebuild") into build/Release/warren_native.node.
{
  "targets": [
    {
      "target_name": "warren_native",
      "sources": [
        "src/native/addon.c",
        "src/native/aead.c",
        "src/native/fdpass.c",
        "src/native/poll.c",
        "src/native/sandbox.c",
        "src/native/tun.c",
        "src/native/udp.c",
      ],
      "defines": ["NAPI_VERSION=8"],
      # Node's common.gypi removes '-Werror' from every target's 'cflags'
      # (a 'cflags!' exclusion), so the warning flags live in 'cflags_c',
      # which it leaves alone. cflags_c also comes after common.gypi's -O3 on
      # the compiler command line, so -O2 is the level in effect, and the explicit
      # -Wunused-parameter undoes common.gypi's -Wno-unused-parameter.
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-Wunused-parameter", "-O2"],
    }
  ]
}
