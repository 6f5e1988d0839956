# cmake -DIN=file -DOUT=file.cpp -DSYMBOL=name -P embed_file.cmake
# Writes a C++ source defining `extern const char* const kforge::SYMBOL` as IN's text.
file(READ "${IN}" text)
set(body "// Generated from ${IN} by cmake/embed_file.cmake. Do not edit.\nnamespace kforge {\nextern const char* const ${SYMBOL};\nconst char* const ${SYMBOL} = R\"kfembed(${text})kfembed\";\n}  // namespace kforge\n")
file(WRITE "${OUT}.tmp" "${body}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
